"""Imports flow one way (emolib/README.md): a module imports only modules listed before
it, and the taught core never imports ``emolib.prepare``."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "emolib"
ORDER = ["config", "layout", "text", "images", "metrics", "hardware", "distributed",
         "preprocess", "data", "synth", "encoders", "fusion", "losses", "model", "train",
         "run", "retrieval", "plots", "notebook", "cli"]
CORE = ORDER[:ORDER.index("retrieval") + 1]


def emolib_imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            if name.startswith("emolib."):
                found.add(name.split(".")[1])
            elif name == "emolib" and isinstance(node, ast.ImportFrom):
                found.update(a.name for a in node.names)
    return found


def test_every_module_is_placed():
    modules = {p.stem for p in ROOT.glob("*.py")} - {"__init__", "__main__"}
    assert modules == set(ORDER)


@pytest.mark.parametrize("module", ORDER)
def test_imports_flow_one_way(module):
    later = set(ORDER[ORDER.index(module):])
    assert not emolib_imports(module) & later, f"{module} imports {emolib_imports(module)}"


@pytest.mark.parametrize("module", CORE)
def test_the_core_never_imports_prepare(module):
    assert "prepare" not in emolib_imports(module)
