"""The layout's rules, checked on the source: no import cycles, the core imports no entry point, small modules.

These read the code with ``ast`` (nothing is imported), so a rule broken anywhere, even in a
branch no test runs, fails here. docs/architecture.md explains the rules.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("newsdedup", "service", "workers")
# the engine and everything it is built from: no web framework, no entry point
CORE = ("newsdedup.text", "newsdedup.index", "newsdedup.storage", "newsdedup.clusters", "newsdedup.engine",
        "newsdedup.dedup", "newsdedup.retention", "newsdedup.observe", "newsdedup.explain", "newsdedup.views",
        "newsdedup.config", "newsdedup.errors", "newsdedup.keys",
        "newsdedup.articles")
ENTRY_POINTS = ("flask", "werkzeug", "service", "workers", "newsdedup.ops", "newsdedup.cli")
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """Modules ``module`` imports (absolute names); with ``top_level_only``, not those inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # also imports under module-level if/try blocks
        nodes = [n for top in tree.body for n in ast.walk(top)
                 if not isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_every_package_has_its_modules() -> None:
    mods = _modules()
    for name in ("newsdedup.text.page", "newsdedup.index.band_table", "newsdedup.clusters.policy",
                 "newsdedup.engine.engine", "newsdedup.dedup.writes", "newsdedup.dedup.reads",
                 "newsdedup.ops.supervisor", "workers.consumer", "service.app"):
        assert name in mods, name


def test_no_import_cycles() -> None:
    mods = _modules()
    graph = {m: {i for i in _imports(p, m, top_level_only=True) if i in mods and i != m} for m, p in mods.items()}
    # a package's __init__ importing its own submodules is fine; a submodule importing its package is an edge too
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_core_never_imports_an_entry_point_or_flask() -> None:
    offenders = []
    for m, p in _modules().items():
        if not m.startswith(CORE):
            continue
        for i in _imports(p, m, top_level_only=False):
            if i.startswith(ENTRY_POINTS) and (i.split(".")[0] in ("flask", "werkzeug")
                                               or any(i == e or i.startswith(e + ".") for e in ENTRY_POINTS)):
                offenders.append(f"{m} imports {i}")
    assert offenders == []


def test_modules_and_classes_stay_small() -> None:
    big = []
    for m, p in _modules().items():
        text = p.read_text(encoding="utf-8")
        n = text.count("\n")
        if n > MAX_MODULE_LINES:
            big.append(f"{m}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            size = (node.end_lineno or node.lineno) - node.lineno + 1 if isinstance(node, ast.ClassDef) else 0
            if size > MAX_CLASS_LINES:
                big.append(f"{m}.{getattr(node, 'name', '?')}: {size} lines")
    assert big == []


def test_every_setting_is_documented_and_the_readme_stays_short() -> None:
    config_src = (ROOT / "newsdedup" / "config.py").read_text(encoding="utf-8")
    names = set(re.findall(r'"(NEWSDEDUP_[A-Z_]+|REDIS_URL)"', config_src))
    assert "NEWSDEDUP_NUM_PERM" in names  # the pattern finds what from_env reads
    reference = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert sorted(n for n in names if f"`{n}`" not in reference) == []
    assert len((ROOT / "README.md").read_bytes()) <= 12_000


def test_lua_scripts_ship_as_files() -> None:
    from newsdedup.storage.scripts import source

    lua_dir = ROOT / "newsdedup" / "storage" / "lua"
    names = sorted(p.stem for p in lua_dir.glob("*.lua"))
    assert {"band_table", "transact", "band_group", "features"} <= set(names)
    # a script that uses the band table gets the library in front of it; the others are sent as written
    assert source("band_group").startswith((lua_dir / "band_table.lua").read_text(encoding="utf-8"))
    assert source("load") == (lua_dir / "load.lua").read_text(encoding="utf-8")
