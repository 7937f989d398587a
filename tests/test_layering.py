"""Dependencies point one way: api -> learner -> annotate, and learner/ml imports nothing of
Django. Read from the source files' import statements (function-local imports included),
so a new upward import fails here rather than in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# The package each layer must not import, by the top-level module name.
FORBIDDEN = {
    "annotate": {"learner", "api"},
    "learner": {"api"},
    "learner/ml": {"django", "annotate", "api", "learner.models", "learner.services"},
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def breaches(layer: str) -> list[str]:
    banned = FORBIDDEN[layer]
    out = []
    for path in sorted((REPO_ROOT / layer).rglob("*.py")):
        for line, module in imported_modules(path):
            if any(module == b or module.startswith(b + ".") for b in banned):
                out.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {module}")
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    assert breaches(layer) == []


def test_the_scan_sees_function_local_imports(tmp_path: Path) -> None:
    source = tmp_path / "selectors.py"
    source.write_text("def f():\n    from learner.models import Round\n    import api.views\n")
    assert imported_modules(source) == [(2, "learner.models"), (3, "api.views")]
