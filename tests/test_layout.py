"""Package layout: the training code is split into the loop (`snps3.train`), the process group and engines
(`snps3.distributed`), checkpoints (`snps3.checkpoint`) and the pre-training objective (`snps3.objectives`), and no snps3
module imports another that (directly or through others) imports it back, not even inside a function."""
import ast, subprocess, sys
from pathlib import Path

import pytest

from helpers import ENV

PKG = Path(__file__).resolve().parents[1] / "snps3"
SPLIT = ["snps3.distributed", "snps3.checkpoint", "snps3.objectives", "snps3.train", "snps3.downstream"]   # dependency order


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    "Every snps3 module `path` imports, at module level or inside functions (relative imports resolved)."
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(pkg.split(".")[:len(pkg.split(".")) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            if target.startswith("snps3"): out.add(target)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("snps3")}
    return out - {mod}


def import_graph() -> dict[str, set[str]]:
    graph = {_module(p): _imports(p) for p in PKG.rglob("*.py")}
    return {m: {d for d in deps if d in graph} for m, deps in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    "One import cycle as [a, b, ..., a], or None (depth-first search)."
    state, stack = {}, []
    def visit(m):
        state[m] = "open"; stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open": return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)): return c
        state[m] = "done"; stack.pop()
    for m in sorted(graph):
        if m not in state and (c := visit(m)): return c
    return None


def test_cycle_finder_finds_a_planted_cycle():
    "The check can fail: the old train -> downstream -> train cycle is reported."
    g = import_graph()
    assert find_cycle(g) is None
    g["snps3.train"] = g["snps3.train"] | {"snps3.downstream"}
    cycle = find_cycle(g)
    assert cycle and cycle[0] == cycle[-1] and {"snps3.train", "snps3.downstream"} <= set(cycle), cycle


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)} (move the shared piece into a module both can import)"


def test_split_modules_import_in_dependency_order():
    "Each part of the training code depends only on the parts before it; the loop never imports a task module."
    g = import_graph()
    for i, m in enumerate(SPLIT):
        assert not g[m] & set(SPLIT[i + 1:]), f"{m} imports {sorted(g[m] & set(SPLIT[i + 1:]))}, which come after it"


@pytest.mark.parametrize("module", SPLIT)
def test_each_module_imports_alone(module):
    "A fresh interpreter imports each module first (a module-level cycle would fail here with a partially initialised module)."
    r = subprocess.run([sys.executable, "-c", f"import {module}"], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_train_still_exports_the_moved_names():
    "Users' `from snps3.train import ...` of the moved public names keeps working (the same objects as in their new homes)."
    import importlib
    import snps3.train
    moved = {"snps3.distributed": ["DistInfo", "setup_distributed", "all_reduce_sum", "reduce_scalars", "gather_no_grad",
                                   "broadcast_parameters"],
             "snps3.checkpoint": importlib.import_module("snps3.checkpoint").__all__,        # all of it came from train
             "snps3.objectives": importlib.import_module("snps3.objectives").__all__}
    for module, names in moved.items():
        for name in names: assert getattr(snps3.train, name) is getattr(importlib.import_module(module), name), (module, name)
