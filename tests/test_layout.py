"""The package's import graph, read from the source: `profiler`'s library never reaches `calibration` (the
dependency runs one way; only the command layer, the `cli` modules, imports both), by import, entry point
or a class named in a string, and the modules of each package form no import cycle."""

import ast
import os
import re

import pytest

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
                    found.update(f"{node.module}.{alias.name}" for alias in node.names)  # a submodule or a name
            graph[module] = {m for m in found if m.split(".")[0] in ("profiler", "calibration")}
    return graph


# The command layer: argument parsing, printing, exit status, loading --calibration. The one place that
# imports both packages; no library module imports it.
COMMANDS = {"profiler.cli", "calibration.cli"}


def test_profiler_never_imports_calibration():
    offenders = {m: sorted(i for i in found if i.split(".")[0] == "calibration")
                 for m, found in imports("profiler").items() if m not in COMMANDS}
    assert not {m: i for m, i in offenders.items() if i}


def test_no_library_module_imports_the_command_layer():
    graph = {**imports("profiler"), **imports("calibration")}
    offenders = {m: sorted(found & COMMANDS) for m, found in graph.items() if m not in COMMANDS}
    assert not {m: i for m, i in offenders.items() if i}


def test_no_entry_point_or_string_leads_from_profiler_to_calibration():
    """No plugin group in the packaging (only the two console scripts), and no library module of
    `profiler` that finds entry points or names a calibration class or module in a string."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert set(project.get("scripts", {})) == {"profile", "calibrate"}
    assert not project.get("entry-points") and not project.get("gui-scripts")
    for folder, _, files in os.walk(os.path.join(ROOT, "profiler")):
        for name in files:
            path = os.path.join(folder, name)
            module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            if not name.endswith(".py") or module in COMMANDS:
                continue
            tree = ast.parse(open(path, encoding="utf-8").read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute):
                    assert node.attr != "entry_points", module  # (import_module is checked by its strings)
                if isinstance(node, ast.Name):
                    assert node.id not in ("entry_points", "__import__"), (module, node.id)
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    text = node.value
                    # a module, class or entry-point group named for lookup at run time (messages, option and
                    # field names may say "calibration": they are not paths to the package)
                    assert not re.fullmatch(r"(calibration|edge_profiler)(\.\w+)+|\w*CalibrationError", text), \
                        (module, text)


@pytest.mark.parametrize("package", ["profiler", "calibration"])
def test_a_package_s_modules_import_no_cycle(package):
    graph = imports(package)
    modules = set(graph)

    def resolve(name):  # "profiler.sandbox.docker" or a name inside a module
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    edges = {m: {resolve(i) for i in found} - {m, package, ""} for m, found in graph.items()}
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


def test_the_harness_package_imports_nothing_host_side():
    """What is copied into a container or onto a device (profiler/harness and the version in
    profiler/__init__.py) imports only itself: a host-side module there would be missing at run time."""
    offenders = {m: sorted(i for i in found if i not in ("profiler", "profiler.__version__")
                           and not i.startswith("profiler.harness"))
                 for m, found in imports("profiler/harness").items()}
    assert not {m: i for m, i in offenders.items() if i}
    from profiler.sandbox.base import harness_files

    package, files = harness_files()
    copied = {f for f in files if f.startswith("harness" + os.sep)}
    on_disk = {os.path.relpath(os.path.join(folder, n), package)
               for folder, _, names in os.walk(os.path.join(package, "harness")) for n in names if n.endswith(".py")}
    assert copied == on_disk and "__init__.py" in files


def test_no_private_name_is_imported_across_modules():
    found = []
    for package in ("profiler", "calibration"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(folder, name)
                for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                        found += [(os.path.relpath(path, ROOT), node.module, a.name) for a in node.names
                                  if a.name.startswith("_") and not a.name.startswith("__")
                                  and node.module.split(".")[0] in ("profiler", "calibration")]
    assert not found


def package_files():
    for package in ("profiler", "calibration"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            yield from (os.path.join(folder, n) for n in sorted(files) if n.endswith(".py"))


def test_a_long_module_says_why_at_its_top():
    """A module over about 400 lines states at its top why it stays one module ("on purpose")."""
    long = {}
    for path in package_files():
        source = open(path, encoding="utf-8").read()
        if source.count("\n") > 400:
            long[os.path.relpath(path, ROOT)] = "on purpose" in (ast.get_docstring(ast.parse(source)) or "")
    assert all(long.values()), [name for name, said in long.items() if not said]


def test_no_function_is_over_60_lines_or_8_parameters():
    found = []
    for path in package_files():
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                params = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
                params -= bool(args.args) and args.args[0].arg in ("self", "cls")
                length = node.end_lineno - node.lineno + 1
                if length > 60 or params > 8:
                    found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name} ({length} lines, "
                                 f"{params} parameters)")
    assert not found, found
