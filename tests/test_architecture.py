"""The layering ARCHITECTURE.md describes, checked on the source: who may import whom."""

from __future__ import annotations

import ast
from collections import defaultdict

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "plugins" / "modelgate"

# ARCHITECTURE.md's table: a unit may import its own layer or a lower one, never a higher one.
LAYERS: list[set[str]] = [
    {"modelgate", "modelgate.config", "modelgate.names", "modelgate.jsonable", "modelgate.fileio"},
    {"modelgate.registry", "modelgate.spec"},
    {
        "modelgate.data",
        "modelgate.datasets",
        "modelgate.quality",
        "modelgate.drift",
        "modelgate.policy",
        "modelgate.experiments",
        "modelgate.report_store",
        "modelgate.stack",
        "modelgate.factories",
    },
    {
        "modelgate.evaluation",
        "modelgate.training",
        "modelgate.reports",
        "modelgate.estimator_check",
        "modelgate.deploy",
        "modelgate.demo",
    },
    {"modelgate.loop", "modelgate.catalog", "modelgate.ui", "modelgate.actions"},
    {"modelgate.pipeline", "modelgate.replay", "modelgate.backtest", "modelgate.ab"},
    {"modelgate.airflow", "modelgate.cli"},
]


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _imports() -> dict[str, set[str]]:
    """Unit -> the other units it imports, lazy imports inside functions included."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("modelgate"):
                target = _unit(node.module or "")
                if target != _unit(module):
                    edges[_unit(module)].add(target)
    return edges


def _layer(unit: str) -> int:
    found = [i for i, layer in enumerate(LAYERS) if unit in layer]
    assert found, f"{unit} is in no layer: add it to ARCHITECTURE.md and to LAYERS here"
    return found[0]


def test_every_import_goes_down_or_sideways() -> None:
    upward = [
        f"{unit} (layer {_layer(unit)}) imports {target} (layer {_layer(target)})"
        for unit, targets in _imports().items()
        for target in targets
        if _layer(target) > _layer(unit)
    ]
    assert upward == []


def test_the_units_import_each_other_without_cycles() -> None:
    edges = _imports()
    state: dict[str, int] = {}

    def visit(unit: str, path: tuple[str, ...]) -> None:
        if state.get(unit) == 2:
            return
        assert state.get(unit) != 1, f"import cycle: {' -> '.join((*path, unit))}"
        state[unit] = 1
        for target in sorted(edges.get(unit, ())):
            visit(target, (*path, unit))
        state[unit] = 2

    for unit in sorted(edges):
        visit(unit, ())


def test_the_architecture_document_names_every_unit() -> None:
    text = (REPO_ROOT / "ARCHITECTURE.md").read_text()
    units = {_unit(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in PACKAGE.rglob("*.py")}
    units = {u.removesuffix(".__init__") for u in units if "migrations" not in u}
    missing = sorted(u for u in units if u != "modelgate" and f"`{u.removeprefix('modelgate.')}" not in text)
    assert missing == [], f"ARCHITECTURE.md does not mention {missing}"
