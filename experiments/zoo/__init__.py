"""The model zoo: PyTorch definitions written in this project (random weights) and exporters."""

import json
import warnings


def export_onnx(model, input_shape, path, opset=17):
    """Eval-mode ONNX export (BatchNorm folded into the convolutions, as deployment tools do)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.rand(input_shape),), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"])
    return path


def export_torchscript(model, input_shape, path):
    """Traced TorchScript with the input shape stored inside, so `profile` needs no INPUT_SHAPES."""
    import torch

    from profiler.runtimes.torch_adapter import SHAPES_FILE

    with torch.no_grad():
        traced = torch.jit.trace(model.eval(), torch.rand(input_shape))
    spec = [{"name": "input", "shape": list(input_shape), "dtype": "float32"}]
    torch.jit.save(traced, str(path), _extra_files={SHAPES_FILE: json.dumps(spec)})
    return path
