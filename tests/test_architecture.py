"""The package's structure, read from its source: parts import one way, module-level imports
form no cycle, and no module reaches into another module's underscored names."""
import ast
import pathlib

import pytest

SOURCE = pathlib.Path(__file__).resolve().parents[1] / "src" / "depthlab"

# a part imports only the parts after it in this order; the private helpers serve every part
PARTS = ["lab", "training", "signal", "optim", "nn"]
ALLOWED = {
    "lab": {"lab", "training", "signal", "optim", "nn"},
    "training": {"training", "optim", "nn"},
    "signal": {"signal", "nn"},
    "optim": {"optim", "nn"},
    "nn": {"nn"},
}
SHARED = {"_fast", "_checks", "_files", "_html", "_svg"}   # import no part
NAMEDTUPLE_API = {"_fields", "_replace", "_asdict", "_make", "_field_defaults"}


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = modules()


def resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, top_level_only: bool) -> set[str]:
    """The depthlab modules ``module`` imports (``from x import y`` counts y when y is a module)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            target = resolve(module, node, path.name == "__init__.py")
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in MODULES and name != module}


def part_of(module: str) -> str | None:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_parts_import_one_way(module):
    part = part_of(module)
    targets = {part_of(target) for target in imports(module, top_level_only=False)}
    targets.discard(None)
    if part in SHARED:
        assert targets <= SHARED, f"{module} (shared by every part) imports parts {sorted(targets - SHARED)}"
    elif part in ALLOWED:
        wrong = targets - ALLOWED[part] - SHARED
        assert not wrong, f"{module} (part {part}) imports {sorted(wrong)}; it may import {sorted(ALLOWED[part])}"


def test_module_level_imports_form_no_cycle():
    graph = {module: imports(module, top_level_only=True) for module in MODULES}
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def defined_names(tree: ast.Module) -> set[str]:
    """Every name a module defines: functions, classes, assignments, attributes set on anything."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_"):
            names.add(node.value)  # __slots__ entries
    return names


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_uses_another_modules_underscored_names(module):
    tree = ast.parse(MODULES[module].read_text())
    own = defined_names(tree)
    offences = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = resolve(module, node, MODULES[module].name == "__init__.py")
            offences += [f"line {node.lineno}: imports {alias.name}" for alias in node.names
                         if alias.name.startswith("_") and not alias.name.startswith("__")
                         and f"{target}.{alias.name}" not in MODULES]   # a private module serves all
        elif isinstance(node, ast.Attribute):
            name = node.attr
            standard_library = isinstance(node.value, ast.Name) and node.value.id in {"os", "sys"}  # os._exit
            if (name.startswith("_") and not name.startswith("__") and name not in NAMEDTUPLE_API
                    and name not in own and not standard_library):
                offences.append(f"line {node.lineno}: .{name}")
    assert not offences, f"{module} uses names private to other modules: {offences}"
