"""The mmb-vit networks: 69 vision transformers in 17 families, as the phones of ../shared/datasets/mmb-vit ran them.

Each network is built with random weights from its `transformers` config class, written out here with
the published hyper-parameters of the checkpoint (no download), at the checkpoint's input size.

- TorchScript (`pt`): traced, as PyTorch Mobile ran it; ONNX: exported from the same module.
- TFLite: the ONNX export converted by the project's checked conversion (onnx2tf, profiler.variants),
  for the families the device ran in TFLite (ViT, DeiT, Swin, CvT, MiT, MobileViT, EfficientFormer).

`transformers` is optional (`make zoo-packages`); 4.57 is the last release with VAN, ViT-hybrid and
EfficientFormer. Every network returns one tensor: its logits (the pooled features for the in21k
checkpoints, which ship without a classifier).
"""

import os
import warnings

# (config class, model class, config keywords, input size); `_base` fills in the common keywords.
_VIT = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
_VIT_S = dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536)
_VIT_T = dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768)
_BEIT = dict(_VIT, use_relative_position_bias=True, use_mean_pooling=True, layer_scale_init_value=0.1)
_SWIN_T = dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24])
_SWIN_S = dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24])
_SWIN_B = dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32])
_MIT_SMALL = dict(hidden_sizes=[32, 64, 160, 256])
_MIT = dict(hidden_sizes=[64, 128, 320, 512])
_PVT = dict(hidden_sizes=[64, 128, 320, 512], num_attention_heads=[1, 2, 5, 8], sequence_reduction_ratios=[8, 4, 2, 1],
            mlp_ratios=[8, 8, 4, 4])
_VAN = dict(hidden_sizes=[64, 128, 320, 512], mlp_ratios=[8, 8, 4, 4])
_LEVIT = dict(mlp_ratio=[2, 2, 2], attention_ratio=[2, 2, 2], drop_path_rate=0.0)

NETWORKS = {
    "vit-base-patch32-224-in21k": ("ViT", "ViTModel", dict(_VIT, patch_size=32), 224),
    "vit-base-patch32-384": ("ViT", "ViTForImageClassification", dict(_VIT, patch_size=32), 384),
    "vit-base-patch16-224-in21k": ("ViT", "ViTModel", dict(_VIT, patch_size=16), 224),
    "vit-base-patch16-384": ("ViT", "ViTForImageClassification", dict(_VIT, patch_size=16), 384),
    "vit-msn-small": ("ViTMSN", "ViTMSNForImageClassification", dict(_VIT_S, patch_size=16), 224),
    "vit-msn-base": ("ViTMSN", "ViTMSNForImageClassification", dict(_VIT, patch_size=16), 224),
    "vit-msn-base-4": ("ViTMSN", "ViTMSNForImageClassification", dict(_VIT, patch_size=4), 224),
    "vit-hybrid-base-bit-384": ("ViTHybrid", "ViTHybridForImageClassification", dict(_VIT, patch_size=1), 384),
    "deit-tiny-distilled-patch16-224": ("DeiT", "DeiTForImageClassificationWithTeacher", dict(_VIT_T), 224),
    "deit-small-distilled-patch16-224": ("DeiT", "DeiTForImageClassificationWithTeacher", dict(_VIT_S), 224),
    "deit-base-distilled-patch16-224": ("DeiT", "DeiTForImageClassificationWithTeacher", dict(_VIT), 224),
    "deit-base-distilled-patch16-384": ("DeiT", "DeiTForImageClassificationWithTeacher", dict(_VIT), 384),
    "beit-base-patch16-224": ("Beit", "BeitForImageClassification", dict(_BEIT), 224),
    "beit-base-patch16-384": ("Beit", "BeitForImageClassification", dict(_BEIT), 384),
    "dinov2-small-imagenet1k-1-layer": ("Dinov2", "Dinov2ForImageClassification",
                                        dict(hidden_size=384, num_attention_heads=6, image_size=518), 224),
    "dinov2-base-imagenet1k-1-layer": ("Dinov2", "Dinov2ForImageClassification",
                                       dict(hidden_size=768, num_attention_heads=12, image_size=518), 224),
    "swin-tiny-patch4-window7-224": ("Swin", "SwinForImageClassification", dict(_SWIN_T, window_size=7), 224),
    "swin-small-patch4-window7-224": ("Swin", "SwinForImageClassification", dict(_SWIN_S, window_size=7), 224),
    "swin-base-patch4-window7-224": ("Swin", "SwinForImageClassification", dict(_SWIN_B, window_size=7), 224),
    "swin-base-patch4-window12-384": ("Swin", "SwinForImageClassification", dict(_SWIN_B, window_size=12), 384),
    "swinv2-tiny-patch4-window8-256": ("Swinv2", "Swinv2ForImageClassification", dict(_SWIN_T, window_size=8), 256),
    "swinv2-tiny-patch4-window16-256": ("Swinv2", "Swinv2ForImageClassification", dict(_SWIN_T, window_size=16), 256),
    "swinv2-base-patch4-window12-192-22k": ("Swinv2", "Swinv2ForImageClassification",
                                            dict(_SWIN_B, window_size=12, num_labels=21841), 192),
    "swinv2-base-patch4-window8-256": ("Swinv2", "Swinv2ForImageClassification", dict(_SWIN_B, window_size=8), 256),
    "swinv2-base-patch4-window16-256": ("Swinv2", "Swinv2ForImageClassification",
                                        dict(_SWIN_B, window_size=16), 256),
    "cvt-13": ("Cvt", "CvtForImageClassification", dict(depth=[1, 2, 10]), 224),
    "cvt-21": ("Cvt", "CvtForImageClassification", dict(depth=[1, 4, 16]), 224),
    "cvt-13-384": ("Cvt", "CvtForImageClassification", dict(depth=[1, 2, 10]), 384),
    "cvt-21-384": ("Cvt", "CvtForImageClassification", dict(depth=[1, 4, 16]), 384),
    "mit-b0": ("Segformer", "SegformerForImageClassification", dict(_MIT_SMALL, depths=[2, 2, 2, 2]), 224),
    "mit-b1": ("Segformer", "SegformerForImageClassification", dict(_MIT, depths=[2, 2, 2, 2]), 224),
    "mit-b2": ("Segformer", "SegformerForImageClassification", dict(_MIT, depths=[3, 4, 6, 3]), 224),
    "mit-b3": ("Segformer", "SegformerForImageClassification", dict(_MIT, depths=[3, 4, 18, 3]), 224),
    "mit-b4": ("Segformer", "SegformerForImageClassification", dict(_MIT, depths=[3, 8, 27, 3]), 224),
    "mit-b5": ("Segformer", "SegformerForImageClassification", dict(_MIT, depths=[3, 6, 40, 3]), 224),
    "mobilevit-xx-small": ("MobileViT", "MobileViTForImageClassification",
                           dict(hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320],
                                expand_ratio=2.0), 256),
    "mobilevit-x-small": ("MobileViT", "MobileViTForImageClassification",
                          dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]), 256),
    "mobilevit-small": ("MobileViT", "MobileViTForImageClassification",
                        dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]), 256),
    "mobilevitv2-1.0-imagenet1k-256": ("MobileViTV2", "MobileViTV2ForImageClassification",
                                       dict(width_multiplier=1.0), 256),
    "mobilevitv2-1.5-voc-deeplabv3": ("MobileViTV2", "MobileViTV2ForSemanticSegmentation",
                                      dict(width_multiplier=1.5, num_labels=21), 256),
    "mobilevitv2-2.0-imagenet1k-256": ("MobileViTV2", "MobileViTV2ForImageClassification",
                                       dict(width_multiplier=2.0), 256),
    "levit-128S": ("Levit", "LevitForImageClassificationWithTeacher",
                   dict(_LEVIT, hidden_sizes=[128, 256, 384], num_attention_heads=[4, 6, 8], depths=[2, 3, 4],
                        key_dim=[16, 16, 16]), 224),
    "levit-128": ("Levit", "LevitForImageClassificationWithTeacher",
                  dict(_LEVIT, hidden_sizes=[128, 256, 384], num_attention_heads=[4, 8, 12], depths=[4, 4, 4],
                       key_dim=[16, 16, 16]), 224),
    "levit-192": ("Levit", "LevitForImageClassificationWithTeacher",
                  dict(_LEVIT, hidden_sizes=[192, 288, 384], num_attention_heads=[3, 5, 6], depths=[4, 4, 4],
                       key_dim=[32, 32, 32]), 224),
    "levit-256": ("Levit", "LevitForImageClassificationWithTeacher",
                  dict(_LEVIT, hidden_sizes=[256, 384, 512], num_attention_heads=[4, 6, 8], depths=[4, 4, 4],
                       key_dim=[32, 32, 32]), 224),
    "levit-384": ("Levit", "LevitForImageClassificationWithTeacher",
                  dict(_LEVIT, hidden_sizes=[384, 512, 768], num_attention_heads=[6, 9, 12], depths=[4, 4, 4],
                       key_dim=[32, 32, 32]), 224),
    "poolformer_s12": ("PoolFormer", "PoolFormerForImageClassification",
                       dict(hidden_sizes=[64, 128, 320, 512], depths=[2, 2, 6, 2]), 224),
    "poolformer_s24": ("PoolFormer", "PoolFormerForImageClassification",
                       dict(hidden_sizes=[64, 128, 320, 512], depths=[4, 4, 12, 4]), 224),
    "poolformer_s36": ("PoolFormer", "PoolFormerForImageClassification",
                       dict(hidden_sizes=[64, 128, 320, 512], depths=[6, 6, 18, 6], layer_scale_init_value=1e-6), 224),
    "poolformer_m36": ("PoolFormer", "PoolFormerForImageClassification",
                       dict(hidden_sizes=[96, 192, 384, 768], depths=[6, 6, 18, 6], layer_scale_init_value=1e-6), 224),
    "poolformer_m48": ("PoolFormer", "PoolFormerForImageClassification",
                       dict(hidden_sizes=[96, 192, 384, 768], depths=[8, 8, 24, 8], layer_scale_init_value=1e-6), 224),
    "efficientformer-l1-300": ("EfficientFormer", "EfficientFormerForImageClassificationWithTeacher",
                               dict(depths=[3, 2, 6, 4], hidden_sizes=[48, 96, 224, 448], num_meta3d_blocks=1,
                                    dim=448, hidden_size=448), 224),
    "efficientformer-l3-300": ("EfficientFormer", "EfficientFormerForImageClassificationWithTeacher",
                               dict(depths=[4, 4, 12, 6], hidden_sizes=[64, 128, 320, 512], num_meta3d_blocks=4,
                                    dim=512, hidden_size=512), 224),
    "efficientformer-l7-300": ("EfficientFormer", "EfficientFormerForImageClassificationWithTeacher",
                               dict(depths=[6, 6, 18, 8], hidden_sizes=[96, 192, 384, 768], num_meta3d_blocks=8,
                                    dim=768, hidden_size=768), 224),
    "swiftformer-xs": ("SwiftFormer", "SwiftFormerForImageClassification",
                       dict(depths=[3, 3, 6, 4], embed_dims=[48, 56, 112, 220]), 224),
    "swiftformer-s": ("SwiftFormer", "SwiftFormerForImageClassification",
                      dict(depths=[3, 3, 9, 6], embed_dims=[48, 64, 168, 224]), 224),
    "swiftformer-l1": ("SwiftFormer", "SwiftFormerForImageClassification",
                       dict(depths=[4, 3, 10, 5], embed_dims=[48, 96, 192, 384]), 224),
    "swiftformer-l3": ("SwiftFormer", "SwiftFormerForImageClassification",
                       dict(depths=[4, 4, 12, 6], embed_dims=[64, 128, 320, 512]), 224),
    "focalnet-tiny": ("FocalNet", "FocalNetForImageClassification", dict(embed_dim=96, depths=[2, 2, 6, 2]), 224),
    "focalnet-small": ("FocalNet", "FocalNetForImageClassification", dict(embed_dim=96, depths=[2, 2, 18, 2]), 224),
    "focalnet-base": ("FocalNet", "FocalNetForImageClassification", dict(embed_dim=128, depths=[2, 2, 18, 2]), 224),
    "van-tiny": ("Van", "VanForImageClassification",
                 dict(_VAN, hidden_sizes=[32, 64, 160, 256], depths=[3, 3, 5, 2]), 224),
    "van-small": ("Van", "VanForImageClassification", dict(_VAN, depths=[2, 2, 4, 2]), 224),
    "van-base": ("Van", "VanForImageClassification", dict(_VAN, depths=[3, 3, 12, 3]), 224),
    "van-large": ("Van", "VanForImageClassification", dict(_VAN, depths=[3, 5, 27, 3]), 224),
    "pvt-tiny-224": ("Pvt", "PvtForImageClassification", dict(_PVT, depths=[2, 2, 2, 2]), 224),
    "pvt-small-224": ("Pvt", "PvtForImageClassification", dict(_PVT, depths=[3, 4, 6, 3]), 224),
    "pvt-medium-224": ("Pvt", "PvtForImageClassification", dict(_PVT, depths=[3, 4, 18, 3]), 224),
    "pvt-large-224": ("Pvt", "PvtForImageClassification", dict(_PVT, depths=[3, 8, 27, 3]), 224),
}
# The ONNX file converted to TFLite: opset 20 has GELU as one operator, which onnx2tf turns into TFLite's
# GELU builtin; below it GELU is spelled with Erf, which TFLite has only as a TensorFlow (Flex) op.
TFLITE_OPSET = 20
# The families the device ran in TFLite (transformers implements them in TensorFlow too).
TFLITE_FAMILIES = {"ViT", "DeiT", "Swin", "Cvt", "Segformer", "MobileViT", "EfficientFormer"}


def default_dataset():
    from experiments.zoo import mmb

    return mmb.default_dataset("mmb-vit")


def names(dataset=None):
    """The network names of the dataset, sorted."""
    from experiments.zoo import mmb

    return mmb.names(dataset or default_dataset(), "mmb_vit_latency_dev.csv")


def input_shape(name):
    return (1, 3, NETWORKS[name][3], NETWORKS[name][3])


def has_tflite(name):
    """Whether the device ran this network in TFLite too (the transformers families with TF classes)."""
    return NETWORKS[name][0] in TFLITE_FAMILIES and NETWORKS[name][1] != "ViTMSNForImageClassification"


def _transformers():
    os.environ.setdefault("USE_TF", "0")  # the PyTorch classes only; importing TensorFlow here costs seconds
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import transformers
    except ImportError:
        raise ImportError("the mmb-vit networks need transformers: make zoo-packages") from None
    return transformers


def build_torch(name, seed=0):
    """The network in eval mode, random weights, returning one tensor."""
    import torch

    if name not in NETWORKS:
        raise KeyError(f"unknown mmb-vit network {name!r}")
    transformers = _transformers()
    family, model_class, keywords, size = NETWORKS[name]
    keywords = dict(keywords)
    if "image_size" not in keywords:
        keywords["image_size"] = size
    keywords.setdefault("num_labels", 1000)
    config = getattr(transformers, f"{family}Config")(**keywords)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _new_model(transformers, model_class, config).eval()
    if family == "MobileViTV2":
        _fold_by_reshape(model)
    _settle_batch_norm(model, input_shape(name))
    return _one_output_class()(model)


def _new_model(transformers, model_class, config):
    cls = getattr(transformers, model_class)
    if model_class != "ViTHybridForImageClassification":
        return cls(config)
    # transformers 4.57's ViT-hybrid initialiser zeroes a mask token that a classifier does not have,
    # as its last step: a stand-in token lets it finish, and is taken away again.
    from unittest import mock

    import torch
    from transformers.models.deprecated.vit_hybrid import modeling_vit_hybrid as module

    original = module.ViTHybridPreTrainedModel._init_weights

    def init_weights(self, part):
        if isinstance(part, module.ViTHybridEmbeddings) and part.mask_token is None:
            part.mask_token = torch.nn.Parameter(torch.zeros(1))
            try:
                original(self, part)
            finally:
                part.mask_token = None
            return
        original(self, part)

    with mock.patch.object(module.ViTHybridPreTrainedModel, "_init_weights", init_weights):
        return cls(config)


def _settle_batch_norm(model, shape):
    """Random weights with batch norm's initial statistics (mean 0, variance 1) shrink the activations
    layer after layer in eval mode, down to subnormal floats that no trained network computes and that
    run many times slower on x86. Each batch norm's statistics are set from two random inputs instead,
    as a trained network's are from its data, so every normalised activation has unit scale."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches seen
        norm.train()
    with torch.no_grad():
        model(pixel_values=torch.rand((2,) + tuple(shape[1:])))
    model.eval()


def _fold_by_reshape(model):
    """MobileViTV2 folds its patches back into a feature map with `fold` (col2im), whose windows never
    overlap (kernel = stride): a pure rearrangement, written here as reshape and permute so that the
    ONNX exporter (which has no col2im before opset 18, and fails on it there) can follow it."""
    import types

    def folding(layer, patches, output_size):
        batch, channels, _, _ = patches.shape
        ph, pw = layer.patch_height, layer.patch_width
        nh, nw = output_size[0] // ph, output_size[1] // pw
        grid = patches.reshape(batch, channels, ph, pw, nh, nw).permute(0, 1, 4, 2, 5, 3)
        return grid.reshape(batch, channels, nh * ph, nw * pw)

    for module in model.modules():
        if type(module).__name__ == "MobileViTV2Layer":
            module.folding = types.MethodType(folding, module)


def _one_output_class():
    import torch

    class OneOutput(torch.nn.Module):
        """The first output of a transformers model (logits; pooled features without a classifier)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            out = self.model(pixel_values=pixel_values, return_dict=True)
            for field in ("logits", "pooler_output", "last_hidden_state"):
                if getattr(out, field, None) is not None:
                    return getattr(out, field)
            raise TypeError(f"{type(self.model).__name__}: no tensor output")

    return OneOutput


# What each format's file depends on besides the network's name (experiments.zoo.cache keys).
EXPORTERS = {"onnx": (("experiments.zoo.mmb_vit", "experiments.zoo"), ("torch", "transformers", "onnx")),
             "pt": (("experiments.zoo.mmb_vit", "experiments.zoo", "profiler.harness.runtimes.torch_adapter"),
                    ("torch", "transformers")),
             "tflite": (("experiments.zoo.mmb_vit", "experiments.zoo", "profiler.conversions"),
                        ("torch", "transformers", "onnx", "onnxruntime", "onnx2tf", "tensorflow"))}


def cache_key(name, fmt, seed=0):
    from experiments.zoo import cache

    modules, packages = EXPORTERS[fmt]
    return cache.key(modules, packages, name, fmt, seed)


def export(name, formats, folder):
    """Write the requested formats ('onnx', 'pt', 'tflite') of one network as <folder>/<name>.<format>;
    returns {format: path}. The TFLite file is the ONNX export converted and checked against it (a
    conversion that changes the function raises profiler.errors.VariantError). Files already there are
    kept; files exported before by the same code and packages come from the export cache."""
    from experiments.zoo import cache, export_converted_tflite, export_onnx, export_torchscript

    os.makedirs(folder, exist_ok=True)
    written, model = {}, None
    for fmt in formats:
        if fmt not in EXPORTERS:
            raise ValueError(f"unknown format {fmt!r} (onnx, pt, tflite)")

        def write(tmp, fmt=fmt):
            nonlocal model
            if model is None:
                model = build_torch(name)
            if fmt == "onnx":
                export_onnx(model, input_shape(name), tmp)
            elif fmt == "pt":
                export_torchscript(model, input_shape(name), tmp)
            else:
                export_converted_tflite(model, input_shape(name), tmp, opset=TFLITE_OPSET)

        written[fmt] = cache.make(cache_key(name, fmt), os.path.join(folder, f"{name}.{fmt}"), write)
    return written
