"""Where code may come from: test modules share helpers through tests/support only, and the
bench uses only public names of the rest of the harness."""

from __future__ import annotations

import ast

from tests.support import REPO


def imports(source: str) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) for every import statement of a source text."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def cross_test_imports(source: str) -> list[str]:
    """Imports of another test module or of conftest (pytest loads those itself)."""
    return [module for module, _ in imports(source)
            if module == "tests.conftest" or module.startswith(("tests.test_", "test_", "conftest"))]


def private_names(source: str, own_package: str) -> list[str]:
    """Underscore names imported from harness modules outside `own_package`."""
    return [f"{module}.{name}" for module, names in imports(source)
            if module.startswith("harness") and not module.startswith(own_package)
            for name in names if name.startswith("_") and not name.startswith("__")]



def test_the_checks_catch_what_they_are_for():
    assert cross_test_imports("from tests.test_faults import LabDevice\n") == ["tests.test_faults"]
    assert cross_test_imports("from test_seeding_lab import seed_lab\n") == ["test_seeding_lab"]
    assert cross_test_imports("from tests.conftest import REPO\n") == ["tests.conftest"]
    assert cross_test_imports("from tests.support.runlab import run_lab\n") == []
    assert private_names("from harness.traffic.packets import _templates\n", "harness.bench") == \
        ["harness.traffic.packets._templates"]
    assert private_names("from harness.bench.suite import _only_case\n", "harness.bench") == []


def test_no_cross_test_imports_another():
    offenders = {str(path.relative_to(REPO)): found for path in sorted((REPO / "tests").rglob("*.py"))
                 if (found := cross_test_imports(path.read_text()))}
    assert offenders == {}, "move what they share to tests/support/"


def test_the_bench_uses_only_public_names_of_the_harness():
    offenders = {path.name: found for path in sorted((REPO / "harness" / "bench").glob("*.py"))
                 if (found := private_names(path.read_text(), "harness.bench"))}
    assert offenders == {}, "give these a public name in their module"
