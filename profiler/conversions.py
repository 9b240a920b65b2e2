"""Conversions to another format, with the converters made for it: ONNX to TFLite (onnx2tf) and to
OpenVINO IR (OpenVINO's convert_model, and NNCF for its int8), a torch.export program (.pt2) to TFLite
(litert-torch), TorchScript to ONNX (torch.onnx). Every converted file is checked against its source
before it is kept: outputs on the data or seeded inputs, and the card's MACs; a conversion that changes
the function is a VariantError saying by how much."""

import json
import os

from profiler.errors import VariantError

AGREEMENT_RTOL = 1e-3  # a converted model's outputs within this share of the source's largest output
AGREEMENT_TOP1 = 0.99
MACS_RTOL = 0.01
CONVERT_EXTRA = "make convert-packages (onnx2tf and what it imports; TensorFlow: the tf extra)"
TORCH_CONVERT_EXTRA = "make convert-packages (litert-torch and what it imports)"
CALIBRATION_SAMPLES = 100


def onnx_to_tflite(source, out):
    """ONNX to TFLite with onnx2tf, after onnxruntime's basic graph optimisation has folded the
    shapes computed at run time into constants (onnx2tf cannot follow a Shape → Slice → Reshape
    chain). Runs in a private working folder: onnx2tf looks there for a sample image array before
    it would download one, and one made here (seeded) stands in for it."""
    import contextlib
    import glob
    import tempfile

    import numpy as np

    try:
        import onnx2tf
        import onnxruntime as ort
    except ImportError as exc:
        raise VariantError(f"ONNX to TFLite needs onnx2tf ({exc.name} is missing): {CONVERT_EXTRA}") from None
    with tempfile.TemporaryDirectory(prefix="edge-profiler-convert-") as work:
        folded = os.path.join(work, "model.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # ONNX ops only
        options.optimized_model_filepath = folded
        options.log_severity_level = 3
        ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
        np.save(os.path.join(work, "calibration_image_sample_data_20x128x128x3_float32.npy"), sample)
        folder = os.path.join(work, "out")
        with contextlib.chdir(work):
            tflite = keras_to_tflite(onnx2tf, folded)
            if tflite is not None:
                with open(out, "wb") as f:
                    f.write(tflite)
                return
            for signatures in (False, True):
                # onnx2tf exits the process when it cannot write its SavedModel (an op name TensorFlow
                # refuses, e.g. a torch export's "/block.0.0/..."); it then asks for signature defs
                try:
                    onnx2tf.convert(input_onnx_file_path=folded, output_folder_path=folder, non_verbose=True,
                                    copy_onnx_input_output_names_to_tflite=True, output_signaturedefs=signatures)
                    break
                except SystemExit:
                    if signatures:
                        raise VariantError(f"{source}: onnx2tf could not convert it (it stopped with an error)") \
                            from None
        made = glob.glob(os.path.join(folder, "*_float32.tflite"))
        if not made:
            raise VariantError(f"{source}: onnx2tf wrote no float32 TFLite file")
        os.replace(made[0], out)


def pt2_to_tflite(source, out):
    """A torch.export program to TFLite with litert-torch, Google's PyTorch converter for LiteRT: the
    program's module converted at the input shapes it was exported at (seeded inputs of those shapes).
    Its input stays in the program's layout (NCHW for an image model), as litert-torch writes it."""
    from profiler.harness.files import silenced

    # litert-torch reports the optional kernels it cannot load and its progress, and torch logs a failed
    # load's whole traceback before it raises: none of it is the caller's.
    try:
        import torch
        with silenced():
            import litert_torch
    except ImportError as exc:
        raise VariantError(f"{source}: a .pt2 to TFLite needs litert-torch ({exc.name} is missing): "
                           f"{TORCH_CONVERT_EXTRA}") from None
    from profiler.harness.runtimes.torch_adapter import export_specs

    with silenced():
        program = torch.export.load(source)
    specs = export_specs(program)
    if any(d is None for spec in specs for d in spec.shape):
        raise VariantError(f"{source}: litert-torch converts fixed shapes; this program has dynamic inputs")
    generator = torch.Generator().manual_seed(0)
    example = tuple(torch.rand(spec.shape, generator=generator).to(getattr(torch, spec.dtype)) for spec in specs)
    module = program.module()
    # The program's graph is fixed as it was exported (an eval-mode model exports its inference graph);
    # its module only carries a leftover `training` flag, and refuses eval(). Clear the flag the way
    # nn.Module does, so that litert-torch does not take it for a model left in training mode.
    torch.nn.Module.train(module, False)
    with silenced():
        litert_torch.convert(module, example).export(out)


def keras_to_tflite(onnx2tf, onnx_path):
    """The TFLite bytes of onnx2tf's Keras model, converted from its frozen function as onnx2tf itself
    converts it (TFLite builtins, TensorFlow ops where there is none, batch matmul kept), but without
    the SavedModel onnx2tf writes first and TensorFlow's converter lowers through again: for a
    transformer those two traces take most of the time. None when this path fails (the caller then
    runs onnx2tf's own)."""
    import tensorflow as tf

    try:
        model = onnx2tf.convert(input_onnx_file_path=onnx_path, non_verbose=True, disable_model_save=True)
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.experimental_lower_to_saved_model = False
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        converter.unfold_batchmatmul = False
        return converter.convert()
    except (Exception, SystemExit):
        return None


def onnx_to_openvino(source, out):
    """ONNX to an OpenVINO IR with OpenVINO's own convert_model, weights kept in fp32."""
    try:
        import openvino as ov
    except ImportError:
        raise VariantError("OpenVINO variants need openvino: pip install 'edge-profiler[openvino]'") from None
    ov.save_model(ov.convert_model(source), out, compress_to_fp16=False)


def openvino_int8(source, out, samples):
    """An IR quantized to int8 by NNCF's post-training quantization, calibrated on --data samples."""
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise VariantError(f"OpenVINO int8 needs nncf ({exc.name} is missing): pip install "
                           "'edge-profiler[openvino]'") from None
    model = ov.Core().read_model(source)
    quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))
    ov.save_model(quantized, out, compress_to_fp16=False)


def feeds(specs, samples):
    """{input name: one sample} per sample; samples (x_data rows) feed a one-input model, else seeded
    random inputs of the source's shapes."""
    import numpy as np

    if samples is not None and len(specs) == 1:
        return [{specs[0].name: np.asarray(row, np.float32)[None]} for row in samples]
    rng = np.random.default_rng(0)
    return [{s.name: rng.random([d or 1 for d in s.shape], dtype=np.float32) for s in specs} for _ in range(16)]


def check_conversion(source, converted, data=None):
    """How closely a converted file (TFLite, OpenVINO IR) computes what its source (ONNX, or a
    torch.export program) computes: outputs on up to 100 `--data` samples (seeded random inputs without
    data; a 4-D input is fed NHWC to a converted file that takes it so) and the cards' MACs. A
    VariantError when the function changed: outputs further apart than AGREEMENT_RTOL of the largest
    output, the same top class on fewer than AGREEMENT_TOP1 of the samples, or MACs more than MACS_RTOL
    apart."""
    import numpy as np

    from profiler.analysis import model_card
    from profiler.harness.runtimes import adapter, as_nhwc, runtime_for

    own = adapter(runtime_for(source))
    session = own.load(source, 1)
    specs = own.describe(session)
    samples = None
    if data:  # the scored samples: the ones the converted file is judged on
        with np.load(data, allow_pickle=False) as arrays:
            samples = arrays["x_data"][:CALIBRATION_SAMPLES] if "x_data" in arrays.files else None
    runtime = adapter(runtime_for(converted))
    other = runtime.load(converted, 1)
    other_specs = runtime.describe(other)
    reference, outputs = [], []
    for feed in feeds(specs, samples):
        reference.append(np.asarray(own.outputs(session, feed)[0], np.float64).reshape(-1))
        fed = {spec.name: as_nhwc(array, (spec.shape or [])[1:]) for array, spec in zip(feed.values(), other_specs)}
        outputs.append(np.asarray(runtime.outputs(other, fed)[0], np.float64).reshape(-1))
    reference, outputs = np.stack(reference), np.stack(outputs)
    if reference.shape != outputs.shape:
        raise VariantError(f"{source}: the converted file outputs {list(outputs.shape[1:])} values per sample, "
                           f"the source {list(reference.shape[1:])}")
    scale = max(1e-12, float(np.abs(reference).max()))
    diff = float(np.abs(outputs - reference).max())
    check = {"samples": len(reference), "inputs": "data" if samples is not None else "random",
             "max_abs_diff": diff, "relative": diff / scale}
    if reference.shape[1] > 1:
        check["top1"] = float(np.mean(reference.argmax(1) == outputs.argmax(1)))
    source_macs, converted_macs = model_card(source).get("macs"), model_card(converted).get("macs")
    check["macs"] = {"source": source_macs, "converted": converted_macs}
    problems = []
    if check["relative"] > AGREEMENT_RTOL:
        problems.append(f"outputs up to {diff:.3g} apart ({100 * check['relative']:.2g}% of the largest)")
    if check.get("top1") is not None and check["top1"] < AGREEMENT_TOP1:
        problems.append(f"the same top class on {100 * check['top1']:.1f}% of {len(reference)} samples")
    if source_macs and converted_macs is not None and abs(converted_macs - source_macs) > MACS_RTOL * source_macs:
        problems.append(f"MACs {converted_macs:,} against the source's {source_macs:,}")
    if problems:
        raise VariantError(f"{source}: the converted {os.path.splitext(converted)[1].lstrip('.')} file changes the "
                           f"function: {'; '.join(problems)}")
    return check


def conversion_check(path):
    """The check a converted file passed when it was made (None for other variants)."""
    try:
        with open(path + ".check.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def export_torchscript(source, out, shapes):
    try:
        import torch  # noqa: F401
    except ImportError:
        raise VariantError(f"{source}: TorchScript variants need torch: pip install 'edge-profiler[torch]'") from None
    from profiler.cards.common import CardError
    from profiler.cards.torchscript import torchscript_to_onnx

    try:
        data, _ = torchscript_to_onnx(source, shapes or {}, fold_constants=True,
                                      why="no ONNX export, so no variants")
    except CardError as exc:
        raise VariantError(str(exc)) from None
    with open(out, "wb") as f:
        f.write(data)
