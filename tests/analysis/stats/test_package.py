"""House rules for analysis/stats: only numpy/pandas/scipy/statsmodels and the standard library."""

import ast
import sys
from pathlib import Path

import pytest

import analysis.stats

PACKAGE = Path(analysis.stats.__file__).parent
ALLOWED_THIRD_PARTY = {"numpy", "pandas", "scipy", "statsmodels"}


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_module_imports_only_allowed_packages(module):
    tree = ast.parse(module.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:
                continue  # relative import inside analysis.stats
            roots = [(node.module or "").split(".")[0]]
        else:
            continue
        for root in roots:
            allowed = root in ALLOWED_THIRD_PARTY or root in sys.stdlib_module_names
            assert allowed, f"{module.name} imports {root}"


def test_public_api_is_exported():
    for name in analysis.stats.__all__:
        assert callable(getattr(analysis.stats, name)), name
