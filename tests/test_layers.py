"""The layers import only downwards (docs/architecture.md): checked on the source, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "mer_lib"
#: Leaves: everything may use them; they use nothing above them (config reads the noise type table).
LEAVES = {"conditions", "config", "storage", "rundir", "metrics", "media_list"}
#: Package -> the mer_lib packages it may import besides itself and the leaves.
ALLOWED: dict[str, set[str]] = {
    "data": set(),
    "noise": {"data"},
    "models": {"data", "noise"},
    "inference": {"data", "models"},
    "training": {"data", "noise", "models", "inference"},
    "evaluation": {"data", "noise", "models", "inference"},
    "features": {"data"},
    "registry": set(),
    "prediction": {"data", "noise", "models", "inference", "features", "registry"},
    "serving": {"data", "noise", "models", "inference", "features", "registry", "prediction"},
}


def _imported_packages(path: Path) -> set[str]:
    """Top-level mer_lib modules/packages a file imports (anywhere in the file)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "mer_lib":
                if len(parts) > 1:
                    out.add(parts[1])
                else:
                    out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "mer_lib" and len(parts) > 1:
                    out.add(parts[1])
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_lower_layers_import_nothing_above_them(package: str) -> None:
    allowed = ALLOWED[package] | LEAVES | {package}
    for path in sorted((LIB / package).rglob("*.py")):
        bad = _imported_packages(path) - allowed
        assert not bad, (f"{path.relative_to(LIB.parent)} imports {sorted(bad)} "
                         f"(layer {package!r} may use {sorted(allowed)})")


def test_leaves_import_only_leaves() -> None:
    for leaf in sorted(LEAVES):
        path = LIB / f"{leaf}.py"
        bad = _imported_packages(path) - LEAVES - {leaf}
        if leaf == "config":  # its one reference outside the leaves: the noise type table, itself import-free
            assert "from mer_lib.noise.table import" in path.read_text()
            assert _imported_packages(LIB / "noise" / "table.py") == set()
            bad -= {"noise"}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_imports_inside_functions_say_why() -> None:
    """An import written inside a function hides an edge of the import graph: allowed only with its reason
    on the line (an optional extra, a heavy client, or the CLI's parser, which imports every command)."""
    silent = []
    for path in sorted(LIB.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                silent += [f"{path.relative_to(LIB.parent)}:{sub.lineno}" for sub in ast.walk(node)
                           if isinstance(sub, (ast.Import, ast.ImportFrom)) and "#" not in lines[sub.lineno - 1]]
    assert not silent, f"imports inside functions without a reason on the line: {sorted(set(silent))}"
