"""The house's shape, read from the source: each layer imports only the layers below it, imports of
the project's own modules sit at module level, and no modules or sibling packages import each
other in a cycle."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cgwm_env", "controllers", "hardware")
# Lowest first; a module's layer is the longest prefix that names it. cgwm_env itself (its
# __init__: the public API and the environments' registration) sits on the environments.
LAYERS = ("cgwm_env.checks", "cgwm_env.progress", "cgwm_env.config", "cgwm_env.physics", "cgwm_env.render", "cgwm_env.data", "cgwm_env.learn",
          "cgwm_env.envs", "cgwm_env", "controllers", "hardware", "cgwm_env.bench", "cgwm_env.cli")


def _modules() -> dict[str, Path]:
    """Every module of the project's packages: dotted name -> file."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _layer(module: str) -> int:
    matches = [i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches, key=lambda i: len(LAYERS[i]))


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported project module, line, at module level) for each import in `module`'s file."""
    tree = ast.parse(MODULES[module].read_text())
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}:{node.lineno}: a relative import; the project imports absolutely"
            # `from package import name` imports the submodule package.name where there is one
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                       for a in node.names]
        else:
            continue
        out += [(t, node.lineno, id(node) in top) for t in targets if t.split(".")[0] in PACKAGES]
    return out


GRAPH = {m: {t for t, _, _ in _imports(m)} for m in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a list of nodes, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_module_is_in_a_layer_and_imports_only_its_own_or_lower_layers():
    climbing = [f"{m}:{line} imports {t} (layer {LAYERS[_layer(t)]} above {LAYERS[_layer(m)]})"
                for m in MODULES for t, line, _ in _imports(m) if _layer(t) > _layer(m)]
    assert not climbing, "\n".join(climbing)


def test_the_projects_own_imports_are_at_module_level():
    inner = [f"{m}:{line} imports {t} inside a function or class" for m in MODULES
             for t, line, top in _imports(m) if not top]
    assert not inner, "\n".join(inner)


def test_no_modules_import_each_other_in_a_cycle():
    assert _cycle(GRAPH) is None


def test_no_sibling_packages_import_each_other_in_a_cycle():
    """Within each package, its children (modules and subpackages, the package's own __init__
    left out: it is their front door) import each other without a cycle."""
    for package in [m for m, path in MODULES.items() if path.name == "__init__.py"]:
        def child(module):
            rest = module[len(package) + 1:].split(".")[0] if module.startswith(package + ".") else None
            return rest and f"{package}.{rest}"

        siblings = {}
        for module, targets in GRAPH.items():
            if child(module):
                siblings.setdefault(child(module), set()).update(
                    child(t) for t in targets if child(t) and child(t) != child(module))
        assert _cycle(siblings) is None, f"{package}: {_cycle(siblings)}"


def test_the_checks_find_a_climbing_import_and_a_cycle():
    """The checks above would fail on a broken house (they are not vacuous)."""
    assert _layer("cgwm_env.physics.model") < _layer("cgwm_env.learn.world_model") < _layer("cgwm_env.cli")
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert len(GRAPH) > 60 and sum(map(len, GRAPH.values())) > 150
