"""The layering of docs/architecture.md, checked: each layer imports only the layers it may.

Imports are read from the source (module level and inside functions alike); those under
``if TYPE_CHECKING:`` are only for annotations and are not counted.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import jobforge

PACKAGE = Path(jobforge.__file__).parent

# layer → the layers it may import (its own always included). Keep in step with docs/architecture.md.
MAY_IMPORT = {
    "config": set(),
    "core": {"config"},
    "runtime": set(),
    "workloads": {"config", "core", "execution", "runtime"},
    "execution": {"config", "core", "workloads"},
    "api": {"config", "core", "execution", "workloads"},
    "server": {"config", "core", "execution", "api", "console"},
    "console": {"config", "core", "api", "server"},  # mounted by the server's app, built on its operations
}
# The command line, the demo and the tools they share with the tests sit above every layer.
TOP = {"cli", "demo", "testing_server", "tinylm"}
for _name in TOP:
    MAY_IMPORT[_name] = set(MAY_IMPORT) | TOP


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "jobforge" and len(parts) > 1 else None


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path) -> list[tuple[int, str]]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                found.extend((child.lineno, f"{target}.{alias.name}" if target == "jobforge" else target)
                             for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def test_every_layer_imports_only_what_it_may():
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        layer = _layer(_module_name(path))
        if layer is None:
            continue
        assert layer in MAY_IMPORT, f"{path.relative_to(PACKAGE)}: layer {layer!r} is not in the architecture page"
        for line, target in _imports(path):
            other = _layer(target)
            if other is not None and other != layer and other not in MAY_IMPORT[layer] and other != "__version__":
                broken.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({layer}) imports {target} ({other})")
    assert not broken, "\n".join(broken)


def test_the_server_imports_no_training_or_simulation_library():
    code = ("import sys; from jobforge.server import app; app.load_api_modules(); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'braket', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
