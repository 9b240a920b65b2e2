"""PyTorch: TorchScript (.pt/.pth) and torch.export programs (.pt2)."""

import json

import torch

from . import InputSpec, ModelError

PACKAGE = "torch"
# A TorchScript file has no input shapes; exporters may store them under this name.
SHAPES_FILE = "edge_profiler_inputs.json"


def version():
    return torch.__version__.split("+")[0]


class _Session:
    def __init__(self, module, specs):
        self.module, self.specs = module, specs


def load(path, threads):
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    try:
        if path.endswith(".pt2"):
            program = torch.export.load(path)
            module = program.module()
            specs = export_specs(program)
        else:
            extra = {SHAPES_FILE: ""}
            module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
            specs = [InputSpec(**s) for s in json.loads(extra[SHAPES_FILE])] if extra[SHAPES_FILE] else _script_specs(module)
    except ModelError:
        raise
    except Exception as exc:
        message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a loadable PyTorch model ({message})") from None
    if not path.endswith(".pt2"):  # an exported program's module is already in inference form
        module.eval()
    return _Session(module, specs)


def _script_specs(module):
    # Names only: TorchScript keeps no shapes (shape None), so INPUT_SHAPES must pin them.
    args = [a for a in module.forward.schema.arguments if a.name != "self"]
    return [InputSpec(a.name, None, "float32") for a in args]


def export_specs(program):
    """The user inputs of an exported program, with the shapes and dtypes it was exported at."""
    specs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            value = node.meta.get("val")
            shape = [int(d) if isinstance(d, int) else None for d in value.shape]
            specs.append(InputSpec(node.name, shape, str(value.dtype).replace("torch.", "")))
    return specs


def describe(session):
    return session.specs


def runner(session, inputs):
    tensors = [torch.from_numpy(a) for a in inputs.values()]
    module = session.module

    def run():
        with torch.inference_mode():
            return module(*tensors)

    return run


def outputs(session, inputs):
    """The model's outputs for these inputs, as numpy arrays (a tuple or list output flattened)."""
    with torch.inference_mode():
        result = session.module(*[torch.from_numpy(a) for a in inputs.values()])
    items = result if isinstance(result, (list, tuple)) else [result]
    return [item.detach().numpy() for item in items]
