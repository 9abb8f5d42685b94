"""The house's shape: imports go down the layers, packages form no loop, private names stay in their file.

Layers, lowest first (conventions.md: formats and readers -> pure compute ->
engines -> models -> reports -> CLI). A module may import its own layer or
a lower one. ``models/`` is the architecture-agnostic core; the models that
register themselves (``reference_model/``, ``baselines/``) sit above it, so
the core cannot reach a model.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import pss_bench

ROOT = Path(pss_bench.__file__).parent
LAYERS = {
    "errors": 0, "structures": 0, "text": 0, "threads": 0,
    "io": 1,
    "metrics": 2, "data": 2,
    "evaluation": 3, "convert": 3,
    "models": 4,
    "reference_model": 5, "baselines": 5,
    "report": 6, "integrations": 6, "testing": 6,
    "demo": 7, "pytest_plugin": 7,
    "cli": 8, "__init__": 8,
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = ("pss_bench", *p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """``(module, imported name or None, line)`` of every pss_bench import, function-level ones included."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "pss_bench":
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    out.append((sub, None, node.lineno) if sub in MODULES else (mod, a.name, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "pss_bench"]
    return out


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_has_a_layer():
    assert {_part(m) for m in MODULES} <= set(LAYERS), "a new top-level module or package: give it a layer"


def test_no_import_reaches_up_a_layer():
    up = [f"{MODULES[m].relative_to(ROOT.parent)}:{line} imports {target} ({_part(m)} {LAYERS[_part(m)]} -> "
          f"{_part(target)} {LAYERS[_part(target)]})"
          for m in MODULES for target, _, line in _imports(m, MODULES[m])
          if LAYERS[_part(target)] > LAYERS[_part(m)]]
    assert up == []


def test_no_package_loop():
    graph = defaultdict(set)
    for m in MODULES:
        for target, _, _ in _imports(m, MODULES[m]):
            if _part(target) != _part(m):
                graph[_part(m)].add(_part(target))
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("package loop: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_no_private_name_crosses_files():
    crossing = [f"{MODULES[m].relative_to(ROOT.parent)}:{line} imports {name} from {target}"
                for m in MODULES for target, name, line in _imports(m, MODULES[m])
                if name is not None and name.startswith("_") and not name.startswith("__") and target != m]
    assert crossing == []


def test_models_core_names_no_model():
    core = [m for m in MODULES if _part(m) == "models"]
    assert core
    for m in core:
        for target, _, line in _imports(m, MODULES[m]):
            assert _part(target) not in ("reference_model", "baselines"), f"{m}:{line} imports {target}"
        text = MODULES[m].read_text(encoding="utf-8")
        assert "== \"upsnet\"" not in text and "== 'upsnet'" not in text, m
