"""Imports point down: kernels -> nothing of spintui; profiles -> kernels; algos -> profiles and kernels;
tui -> everything. The package root (errors, options) imports no layer. Checked on the source, lazy
imports inside functions included, so a shortcut cannot hide in a function body."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"kernels": "kernels", "profiles": "profiles", "algos": "algos", "tui": "tui", "root": "spintui_pkg"}
ROOT_MODULES = {"spintui", "spintui.errors", "spintui.options"}
ALLOWED = {
    "root": set(),
    "kernels": {"kernels"},
    "profiles": {"profiles", "kernels"},
    "algos": {"algos", "profiles", "kernels"},
    "tui": {"tui", "algos", "profiles", "kernels"},
}


def spintui_imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "spintui"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "spintui":
            if node.module == "spintui":  # from spintui import tui / errors / __version__
                out += [(node.lineno, f"spintui.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def layer_of(module: str) -> str:
    parts = module.split(".")
    if module in ROOT_MODULES or (len(parts) == 2 and parts[1] == "__version__"):
        return "root"
    return parts[1]


def violations(layer: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / LAYERS[layer]).rglob("*.py")):
        if layer == "root" and path.name == "__main__.py":
            continue  # `python -m spintui` starts the CLI
        for line, module in spintui_imports(path):
            target = layer_of(module)
            if target != "root" and target not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_imports_point_down(layer):
    assert violations(layer) == []


def test_the_checker_sees_lazy_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from spintui.tui.cli import main\n    import spintui.algos.sac\n"
                      "from spintui import errors, tui\n")
    modules = sorted(m for _, m in spintui_imports(sample))
    assert modules == ["spintui.algos.sac", "spintui.errors", "spintui.tui", "spintui.tui.cli"]
    assert [layer_of(m) for m in modules] == ["algos", "root", "tui", "tui"]


def test_a_trainer_never_imports_textual_or_rich():
    code = ("import sys, spintui.algos.launch, spintui.algos.registry as r\n"
            "[a.load() for a in r.ALGORITHMS.values()]\n"
            "print(sorted(m for m in ('textual', 'rich', 'typer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
