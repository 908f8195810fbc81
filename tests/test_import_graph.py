"""The package layout's rules, read from the source: no import cycles in robustloss_core or services (module-
level or inside functions), the science never imports the Ray layer, and presets import nothing."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def import_graph() -> dict[str, set[str]]:
    files = {}
    for pkg in ("robustloss_core", "services"):
        for p in (REPO / pkg).rglob("*.py"):
            mod = ".".join(p.relative_to(REPO).with_suffix("").parts)
            files[mod.removesuffix(".__init__")] = p
    graph = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(parts + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # ``from . import x`` imports the submodule x; its parent package is initialised first in any case
                names = ([target] if node.module else []) + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[mod] |= {n for n in names if n in graph and n != mod}
    return graph


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 20
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import cycle: " + " -> ".join(path + [n])
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_core_never_imports_services_and_presets_import_nothing():
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.startswith("robustloss_core"):
            assert not any(d.startswith("services") for d in deps), (mod, deps)
    assert graph["robustloss_core.presets"] == set()
