"""The model zoo: PyTorch definitions written in this project (random weights) and exporters.

    python -m experiments.zoo mobilenet_v2_1.0 resnet18 --formats onnx pt tflite --out models/

Names: mobilenet_v2_{0.25,0.5,0.75,1.0}, squeezenet1_1, shufflenet_v2_{0.5,1.0}, resnet18,
inception_v3, squeezenet_3d, shufflenet_v2_3d_{0.25,0.5,1.0,1.5,2.0},
mobilenet_v2_3d_{0.25,0.5,1.0,1.5,2.0}, and nb201:<arch_str>.
"""

import json
import os
import warnings

IMAGE = (1, 3, 224, 224)
INCEPTION = (1, 3, 299, 299)


def _registry():
    from experiments.zoo import image, video

    entries = {f"mobilenet_v2_{w}": (lambda w=w: image.MobileNetV2(w), IMAGE) for w in (0.25, 0.5, 0.75, 1.0)}
    entries.update({
        "squeezenet1_1": (image.SqueezeNet, IMAGE),
        "shufflenet_v2_0.5": (lambda: image.ShuffleNetV2(0.5), IMAGE),
        "shufflenet_v2_1.0": (lambda: image.ShuffleNetV2(1.0), IMAGE),
        "resnet18": (image.ResNet18, IMAGE),
        "inception_v3": (image.InceptionV3, INCEPTION),
        "squeezenet_3d": (video.SqueezeNet3D, video.INPUT_SHAPE),
    })
    for w in (0.25, 0.5, 1.0, 1.5, 2.0):
        entries[f"shufflenet_v2_3d_{w}"] = (lambda w=w: video.ShuffleNetV2_3D(w), video.INPUT_SHAPE)
        entries[f"mobilenet_v2_3d_{w}"] = (lambda w=w: video.MobileNetV2_3D(w), video.INPUT_SHAPE)
    return entries


def names():
    return sorted(_registry())


def build(name, seed=0):
    """(model in eval mode, input shape) for a zoo name."""
    import torch

    torch.manual_seed(seed)
    if name.startswith("nb201:"):
        from experiments.zoo import nb201

        return nb201.build(name[len("nb201:"):], seed), nb201.INPUT_SHAPE
    registry = _registry()
    if name not in registry:
        raise KeyError(f"unknown zoo model {name!r} (known: {', '.join(sorted(registry))})")
    make, shape = registry[name]
    return make().eval(), shape


def export_onnx(model, input_shape, path, opset=17):
    """Eval-mode ONNX export (BatchNorm folded into the convolutions, as deployment tools do)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.rand(input_shape),), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"])
    return path


def export_converted_tflite(model, input_shape, path, opset=17, via="onnx"):
    """TFLite of a torch model by a route `profile --variants tflite` takes: via "onnx", its ONNX export
    converted by onnx2tf; via "pt2", its torch.export program converted by litert-torch. Checked against
    the export it was made from (outputs and MACs; a conversion that changed the function raises
    profiler.errors.VariantError). `path` is written only when it passed."""
    import shutil
    import tempfile

    from profiler.conversions import check_conversion, onnx_to_tflite, pt2_to_tflite

    with tempfile.TemporaryDirectory(prefix="edge-profiler-zoo-") as work:
        converted = os.path.join(work, "model.tflite")
        if via == "pt2":
            import torch

            source = os.path.join(work, "model.pt2")
            torch.export.save(torch.export.export(model.eval(), (torch.rand(input_shape),)), source)
            pt2_to_tflite(source, converted)
        else:
            source = os.path.join(work, "model.onnx")
            export_onnx(model, input_shape, source, opset=opset)
            onnx_to_tflite(source, converted)
        check_conversion(source, converted)
        shutil.move(converted, path)  # path may be the export cache's temporary name
    return path


def export_torchscript(model, input_shape, path):
    """Traced TorchScript with the input shape stored inside, so `profile` needs no INPUT_SHAPES."""
    import torch

    from profiler.harness.runtimes.torch_adapter import SHAPES_FILE

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), torch.rand(input_shape))
    spec = [{"name": "input", "shape": list(input_shape), "dtype": "float32"}]
    torch.jit.save(traced, str(path), _extra_files={SHAPES_FILE: json.dumps(spec)})
    return path
