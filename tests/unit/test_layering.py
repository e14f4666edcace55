"""The core's dependency rule, read from the source: foundation <- stages in lifecycle order <- reporting <- ops.

Each module of ``include/lifecycle`` belongs to one layer; it may import its own layer and the layers before it,
never a later one, and no module of the core imports Airflow. ``cli`` is the entry point: it may import any layer
(lazily). Old import paths kept as shims (``pyfunc_model``, ``packaging``) are exempt from the foundation rule
because they only re-export.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lifecycle.paths import PROJECT_ROOT

CORE = PROJECT_ROOT / "include" / "lifecycle"
LAYERS = ["foundation", "data", "registry", "training", "serving", "monitoring", "retirement", "reporting", "ops"]
ENTRY_POINTS = {"lifecycle.cli"}
SHIMS = {"lifecycle.pyfunc_model": "training", "lifecycle.packaging": "training"}


def module_name(path: Path, root: Path = CORE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """``lifecycle.<stage>.x`` -> stage; a module at the package root is the foundation."""
    if module in SHIMS:
        return SHIMS[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "foundation"


def imports(path: Path, root: Path = CORE) -> list[tuple[int, str]]:
    """Every module an import statement names (top level or inside a function), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from lifecycle import ops`` / ``from lifecycle.training import flow`` name submodules
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module.startswith("lifecycle") and (root.parent / node.module.replace(".", "/")
                                                                  / alias.name).with_suffix(".py").exists()]
    return found


def violations(root: Path = CORE) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        mine = LAYERS.index(layer_of(module))
        for line, target in imports(path, root):
            where = f"{path.relative_to(root.parent)}:{line}"
            if target == "airflow" or target.startswith("airflow."):
                bad.append(f"{where}: the core imports Airflow ({target})")
            elif target.startswith("lifecycle.") and module not in ENTRY_POINTS:
                theirs = LAYERS.index(layer_of(target))
                if theirs > mine:
                    bad.append(f"{where}: {LAYERS[mine]} module {module} imports {target} ({LAYERS[theirs]})")
    return bad


def test_dependencies_point_one_way():
    assert violations() == []


def test_every_stage_folder_says_what_it_decides_and_may_import():
    for layer in LAYERS[1:]:
        init = CORE / layer / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "import" in doc, f"{init} does not say what it may import"


@pytest.mark.parametrize("source, expected", [
    pytest.param("from lifecycle.ops.demo import run\n", "imports lifecycle.ops.demo (ops)", id="stage->ops"),
    pytest.param("def f():\n    from lifecycle.reporting import html\n", "(reporting)", id="lazy stage->reporting"),
    pytest.param("from lifecycle.monitoring.run import measure\n", "(monitoring)", id="earlier->later stage"),
    pytest.param("import airflow.sdk\n", "imports Airflow", id="airflow"),
])
def test_the_checker_catches_a_wrong_way_import(tmp_path: Path, source: str, expected: str):
    """The check itself can fail: a training module with each kind of bad import is reported."""
    fake = tmp_path / "lifecycle" / "training"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text(source)
    found = violations(tmp_path / "lifecycle")
    assert len(found) == 1 and expected in found[0], found
    assert found[0].startswith("lifecycle/training/bad.py:")
