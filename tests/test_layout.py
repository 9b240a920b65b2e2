"""The package's import graph, read from the source: `profiler` never imports `calibration` (the
dependency runs one way) and the modules of `profiler` form no import cycle."""

import ast
import os

from tests.conftest import ROOT


def imports(package):
    """{module: {imported module of the project}} for every file of a package, lazy imports too."""
    graph = {}
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            found = set()
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                if isinstance(node, ast.Import):
                    found.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module)
            graph[module] = {m for m in found if m.split(".")[0] in ("profiler", "calibration")}
    return graph


def test_profiler_never_imports_calibration():
    offenders = {m: sorted(i for i in found if i.split(".")[0] == "calibration")
                 for m, found in imports("profiler").items()}
    assert not {m: i for m, i in offenders.items() if i}


def test_profiler_modules_import_no_cycle():
    graph = imports("profiler")
    modules = set(graph)

    def resolve(name):  # "profiler.sandbox.docker" or a name inside a module
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    edges = {m: {resolve(i) for i in found} - {m, "profiler", ""} for m, found in graph.items()}
    state = {}

    def visit(module, path):
        state[module] = "open"
        for nxt in sorted(edges.get(module, ())):
            if state.get(nxt) == "open":
                raise AssertionError(" -> ".join(path + [module, nxt]))
            if nxt not in state:
                visit(nxt, path + [module])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
