"""Variants of one model, made with the runtimes' own tools, to profile beside the original.

  onnx    int8-dynamic  onnxruntime.quantization.quantize_dynamic (int8 weights, activations at run time)
          int8-static   onnxruntime.quantization.quantize_static, QDQ, calibrated on --data samples
          fp16          onnxconverter_common.float16 (float inputs and outputs kept)
  tflite  int8-dynamic  ai-edge-quantizer, dynamic_wi8_afp32
          int8-static   ai-edge-quantizer, static_wi8_ai8, calibrated on --data samples
          fp16          ai-edge-quantizer, float casting: fp16 weights, float32 compute
  onnx    tflite        the device's format: onnx2tf, after onnxruntime's own constant folding (shapes
                        computed at run time become constants), NHWC as a Keras-made file is; checked
                        against the source before it is kept (outputs and MACs)
          tflite-<kind> a TFLite variant (int8, int8-dynamic, int8-static, fp16) of that converted file
  onnx    openvino      an OpenVINO IR through OpenVINO's convert_model (fp32 weights), checked likewise
          openvino-int8 that IR quantized by NNCF's post-training quantization on --data samples
  pt      onnx          torch.onnx.export of the TorchScript module at its input shapes (fp32), always
                        made when a TorchScript file gets variants; the ONNX kinds are made from it
  pt2     tflite        the device's format from a torch.export program: litert-torch (Google's PyTorch
                        converter for LiteRT), checked against the program before it is kept
          tflite-<kind> a TFLite variant of that converted file
`int8` is int8-static when there is data to calibrate on, else int8-dynamic. Files go to a cache
folder keyed by the source's sha256, the variant and the calibration data's sha256; they are never
written next to the user's file. The converters are the optional `variants` extra.
"""

import functools
import json
import os

from profiler.conversions import (CALIBRATION_SAMPLES, check_conversion, export_torchscript, onnx_to_openvino,
                                  onnx_to_tflite, openvino_int8, pt2_to_tflite)
from profiler.errors import VariantError
from profiler.harness.files import sha256_of, silenced, write_atomic

KINDS = {"onnx": ("int8-dynamic", "int8-static", "fp16", "tflite", "openvino"),
         "tflite": ("int8-dynamic", "int8-static", "fp16"),
         "xml": ("int8-static",),
         "pt": ("onnx", "int8-dynamic", "int8-static", "fp16", "tflite", "openvino"),
         "pt2": ("tflite",)}
# kinds that change the format: (source format, kind) -> the variant's name and its file's extension
CONVERSIONS = {("pt", "onnx"): ("pt-onnx", "onnx"), ("onnx", "tflite"): ("onnx-tflite", "tflite"),
               ("onnx", "openvino"): ("onnx-openvino", "xml"), ("pt2", "tflite"): ("pt2-tflite", "tflite")}
# formats reached by a conversion, from each source format: then the variants of the converted file
CONVERTED_TO = {"onnx": ("tflite", "openvino"), "pt2": ("tflite",)}
TORCHSCRIPT = (".pt", ".pth")
FP16_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE", "EMBEDDING_LOOKUP")
EXTRA = "pip install 'edge-profiler[variants]' (onnxconverter-common, ai-edge-quantizer)"


def cache_folder():
    from profiler.harness.files import cache_folder as user_cache

    return user_cache("variants")


def parse(text):
    """'int8,fp16' -> ['int8', 'fp16']; an unknown name is a VariantError."""
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    known = {"int8", "int8-dynamic", "int8-static", "fp16", "onnx", "tflite", "tflite-int8", "tflite-int8-dynamic",
             "tflite-int8-static", "tflite-fp16", "openvino", "openvino-int8"}
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise VariantError(f"--variants {text}: choose from {', '.join(sorted(known))} (comma-separated)")
    return list(dict.fromkeys(names))


def _calibration_array(data):
    """(name, array) of the samples int8-static calibrates on: `x_calibration` when the data file has
    one (samples kept apart from the scored `x_data`), else the first samples of `x_data`."""
    import numpy as np

    arrays = np.load(data, allow_pickle=False)
    name = "x_calibration" if "x_calibration" in arrays.files else "x_data"
    if name not in arrays.files:
        raise VariantError(f"--data {os.path.basename(data)}: int8-static calibrates on x_calibration or x_data, "
                           "which it lacks")
    return name, np.asarray(arrays[name], dtype=np.float32)


def _samples(data, count=CALIBRATION_SAMPLES):
    if not data:
        return None
    _, x = _calibration_array(data)
    return [x[i:i + 1] for i in range(min(count, len(x)))]


def calibration_samples(data, count=CALIBRATION_SAMPLES):
    """What an int8-static variant was calibrated on, for its record: the array, how many samples, and
    whether those samples are also among the scored ones (x_data)."""
    name, x = _calibration_array(data)
    return {"array": name, "samples": min(count, len(x)), "scored": name == "x_data"}


def _onnx(source, kind, out, samples):
    try:
        if kind == "fp16":
            import onnx
            from onnxconverter_common import float16

            onnx.save(float16.convert_float_to_float16(onnx.load(source), keep_io_types=True), out)
            return
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, \
            quantize_static
    except ImportError as exc:
        raise VariantError(f"{kind} variants need the variants extra ({exc.name} is missing): {EXTRA}") from None
    if kind == "int8-dynamic":
        quantize_dynamic(source, out, weight_type=QuantType.QInt8)
        return
    import onnxruntime as ort

    name = ort.InferenceSession(source, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter({name: s} for s in samples)

        def get_next(self):
            return next(self.items, None)

    quantize_static(source, out, Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)


def _tflite(source, kind, out, samples):
    try:
        import ai_edge_quantizer as aq
        from ai_edge_quantizer import recipe
    except ImportError as exc:
        raise VariantError(f"{kind} variants of TFLite files need the variants extra ({exc.name} is missing): "
                           f"{EXTRA}") from None
    quantizer = aq.Quantizer(source)
    if kind == "int8-dynamic":
        quantizer.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        quantizer.quantize().export_model(out, overwrite=True)
        return
    if kind == "fp16":
        from ai_edge_quantizer import qtyping
        from ai_edge_quantizer.quantizer import AlgorithmName

        config = qtyping.OpQuantizationConfig(
            weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
            compute_precision=qtyping.ComputePrecision.FLOAT)
        for op in FP16_OPS:  # the ops whose weights the quantizer's float casting stores as fp16
            quantizer.update_quantization_recipe(regex=".*", operation_name=getattr(qtyping.TFLOperationName, op),
                                                 algorithm_key=AlgorithmName.FLOAT_CASTING, op_config=config)
        quantizer.quantize().export_model(out, overwrite=True)
        return
    from profiler.harness.runtimes.tflite_adapter import interpreter

    signatures = interpreter.Interpreter(model_path=source).get_signature_list()
    key = next(iter(signatures))
    (input_name,) = signatures[key]["inputs"][:1]
    quantizer.load_quantization_recipe(recipe.static_wi8_ai8())
    calibration = quantizer.calibrate({key: [{input_name: s} for s in samples]})
    quantizer.quantize(calibration).export_model(out, overwrite=True)


def make(path, names, data=None, folder=None, skipped=None, shapes=None):
    """[(variant kind, file path, the source's sha256)] for the model at path, made or taken from the cache;
    a kind the format does not offer is named in `skipped` (a list), not made. shapes (name -> dims) pin
    a TorchScript file's inputs for its ONNX export when the file does not embed them."""
    skipped = [] if skipped is None else skipped
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    fmt = "pt" if "." + fmt in TORCHSCRIPT else fmt
    if fmt not in KINDS:
        raise VariantError(f"{path}: variants are made of .onnx, .tflite, TorchScript (.pt) and torch.export "
                           "(.pt2) files")
    made = []
    if fmt == "pt":  # its ONNX export first, then the ONNX variants of that export
        (kind, exported, source_sha), = _cached(path, "onnx", "pt", data, folder, shapes)
        made.append((kind, exported, source_sha))
        for kind, out, _ in make(exported, [n for n in names if n != "onnx"], data, folder, skipped):
            made.append((kind, out, source_sha))
        return made
    for target in CONVERTED_TO.get(fmt, ()):  # another format first, then its variants
        converted = [n for n in names if n == target or n.startswith(target + "-")]
        if not converted:
            continue
        (kind, other, source_sha), = _cached(path, target, fmt, data, folder, shapes)
        made.append((kind, other, source_sha))
        for kind, out, _ in make(other, [n[len(target) + 1:] for n in converted if n != target], data, folder,
                                 skipped):
            made.append((f"{target}-{kind}", out, source_sha))
        names = [n for n in names if n not in converted]
    for name in names:
        kind = ("int8-static" if data else "int8-dynamic") if name == "int8" else name
        if kind not in KINDS[fmt]:
            skipped.append(f"{os.path.basename(path)}: no {kind} variant of a .{fmt} file (offered: "
                           f"{', '.join(KINDS[fmt])}); skipped")
            continue
        if kind == "int8-static" and not data:
            raise VariantError(f"{path}: int8-static calibrates on samples: give --data FILE.npz")
        made += _cached(path, kind, fmt, data, folder, shapes)
    return made


def _sha256(path):
    """A file's sha256, hashed once for as long as its size and modification time stay the same: each
    variant of a model, and each conversion behind it, is keyed by it."""
    stat = os.stat(path)
    return _sha256_of_version(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256_of_version(path, size, mtime_ns):
    return sha256_of(path)


def _cached(path, kind, fmt, data, folder, shapes):
    """[(kind, the variant's path, the source's sha256)], made unless the cache holds it."""
    source_sha = _sha256(path)
    key = source_sha[:16] + (f"-{_sha256(data)[:12]}" if kind == "int8-static" else "")
    if fmt == "pt" and shapes:  # the export depends on the input shapes it was given
        import hashlib

        key += "-" + hashlib.sha256(json.dumps(shapes, sort_keys=True).encode()).hexdigest()[:8]
    target_folder = os.path.join(folder or cache_folder(), key)
    stem = os.path.splitext(os.path.basename(path))[0]
    conversion, suffix = CONVERSIONS.get((fmt, kind), (None, fmt))
    # A conversion reads "<stem>.pt-onnx" or "<stem>.onnx-tflite", so that it never shares a name with
    # the user's own <stem>.onnx or <stem>.tflite in a table.
    out = os.path.join(target_folder, f"{stem}.{conversion or kind}.{suffix}")
    if not os.path.isfile(out):
        os.makedirs(target_folder, exist_ok=True)
        partial = f"{out}.partial-{os.getpid()}.{suffix}"
        try:
            samples = _samples(data) if kind == "int8-static" else None
            with silenced():  # the converters print progress and banners of their own
                if fmt == "pt":
                    export_torchscript(path, partial, shapes)
                elif conversion == "onnx-tflite":
                    onnx_to_tflite(path, partial)
                elif conversion == "pt2-tflite":
                    pt2_to_tflite(path, partial)
                elif conversion == "onnx-openvino":
                    onnx_to_openvino(path, partial)
                elif fmt == "xml":
                    openvino_int8(path, partial, samples)
                else:
                    (_onnx if fmt == "onnx" else _tflite)(path, kind, partial, samples)
            if conversion in ("onnx-tflite", "onnx-openvino", "pt2-tflite"):  # kept only if it computes what its source does
                check = check_conversion(path, partial, data)
                write_atomic(out + ".check.json", lambda f: json.dump(check, f))
            if suffix == "xml":  # an IR's weights move with it, named after it
                os.replace(os.path.splitext(partial)[0] + ".bin", os.path.splitext(out)[0] + ".bin")
            os.replace(partial, out)
        except VariantError:
            raise
        except Exception as exc:  # a converter's own failure, on one line
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise VariantError(f"{path}: could not make the {kind} variant ({text})") from None
        finally:
            for leftover in (partial, os.path.splitext(partial)[0] + ".bin"):
                if os.path.exists(leftover):
                    os.remove(leftover)
            if not os.path.exists(out) and os.path.exists(out + ".check.json"):
                os.remove(out + ".check.json")
            if not os.listdir(target_folder):  # a failed or interrupted conversion leaves no empty key
                os.rmdir(target_folder)
    return [(kind, out, source_sha)]


