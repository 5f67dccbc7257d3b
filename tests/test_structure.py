"""The package's edges: the layers (who may import whom), no import cycle (function-local imports included), no module
over the size at which a file stops being one readable concept, probes on the public API."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("icl_interp", "probes")
#: not a rule to split files by size (the layers and one concept per module are: see the layering test), a ceiling
#: past which a module is no longer one readable concept (TransformerLens' 2,000-line files are what we avoid)
MAX_LINES = 600

pytestmark = pytest.mark.tl3


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """Every module of ours that ``name`` imports, at the top or inside a function (``TYPE_CHECKING`` blocks excluded)."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            skip.update(id(n) for n in ast.walk(node))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        found.update(t for t in targets if t in modules and t != name)
    return found


def test_no_import_cycle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # a package __init__ that re-exports its submodules is not a cycle with them
    for name in graph:
        graph[name] = {t for t in graph[name] if not (name.startswith(t + ".") and modules[t].name == "__init__.py")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_no_module_past_the_ceiling():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_probes_use_only_the_public_api():
    for path in (ROOT / "probes").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("icl_interp"):
                parts = node.module.split(".")
                assert not any(p.startswith("_") for p in parts), f"{path.name} imports the private {node.module}"
                assert not any(a.name.startswith("_") for a in node.names), f"{path.name} imports a private name from {node.module}"


#: the package's layers, from the ground up, and the layers each may import (function-local imports included): the
#: model and checkpoints never reach up into the tools, the probe catalogue (``probes/``) stands on the baselines, training never uses the tools, the tools never use training,
#: the zoo's relations read saved training configs, the analysis stands on everything, and the CLI and the public face
#: on top. ``_lazy`` (submodules loaded on attribute access) is the one helper every package's ``__init__`` uses.
LAYERS = {
    "icl_interp._lazy": set(),
    "icl_interp.core": {"icl_interp._lazy"},
    "icl_interp.baselines": {"icl_interp._lazy", "icl_interp.core"},
    "probes": {"icl_interp._lazy", "icl_interp.core", "icl_interp.baselines"},  # the catalogue of probe targets
    "icl_interp.tools": {"icl_interp._lazy", "icl_interp.core", "icl_interp.baselines", "probes"},
    "icl_interp.training": {"icl_interp._lazy", "icl_interp.core"},
    "icl_interp.zoo": {"icl_interp._lazy", "icl_interp.core", "icl_interp.training"},
    "icl_interp.analysis": {"icl_interp._lazy", "icl_interp.core", "icl_interp.baselines", "icl_interp.tools",
                            "icl_interp.training", "icl_interp.zoo", "probes"},
}
TOP = {"icl_interp", "icl_interp.cli", "icl_interp.__main__"}  # may import every layer


def _layer(module: str) -> str:
    if module in TOP:
        return "top"
    return max((name for name in LAYERS if module == name or module.startswith(name + ".")), key=len)


def test_every_module_belongs_to_one_layer_and_imports_only_the_layers_below_it():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        layer = _layer(name)
        if layer == "top":
            continue
        for target in _imports(name, path, modules):
            other = _layer(target)
            if other != layer and other not in LAYERS[layer]:
                wrong.append(f"{name} ({layer}) imports {target} ({other})")
    assert not wrong, "imports across the layers' order:\n" + "\n".join(sorted(wrong))


def test_the_layering_test_sees_an_import_that_runs_up(tmp_path):
    """The check above reads function-local imports too: a planted one from the model up into the tools is caught."""
    planted = tmp_path / "model.py"
    planted.write_text("def f():\n    from ..tools.runner import check_model\n")
    modules = {**_modules(), "icl_interp.core.model": planted}
    found = _imports("icl_interp.core.model", planted, modules)
    assert "icl_interp.tools.runner" in found and _layer("icl_interp.tools.runner") not in LAYERS[_layer("icl_interp.core.model")]
