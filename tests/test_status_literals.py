"""One source for the state names (issue 10 item 3): outside flowsweep/status.py no module spells a
point or sweep state (or a counts key) as a string literal; it imports PointStatus, SweepStatus or the
sets next to them. Docstrings may name states in prose."""

from __future__ import annotations

import ast
from pathlib import Path

from flowsweep.status import CANCELLING, COUNT_KEYS, PointStatus, SweepStatus

REPO = Path(__file__).resolve().parents[1]
NAMES = {*PointStatus, *SweepStatus, *COUNT_KEYS, CANCELLING}
# (module, literal) pairs whose string is not one of our states
NOT_A_STATE = {
    ("core/dynamics/flow.py", "failed"),  # scipy's OdeSolver.status
    ("service/queries.py", "cached"),  # the points table's boolean `cached` column
    ("service/store.py", "cached"),  # ... the same column
    ("service/models.py", "cached"),  # ... the same column, in a covering index
    ("bench/query_latency.py", "cached"),  # ... the same column (synthetic rows)
    ("bench/reproduce/step_size.py", "diverged"),  # a report table's column header
}


def state_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return [
        (n.lineno, n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in NAMES and id(n) not in docstrings
    ]


def test_state_literals_finds_a_spelled_state(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""done in prose"""\nif status == "diverged":\n    pass\n')
    assert state_literals(f) == [(2, "diverged")]


def test_no_module_spells_a_state():
    found = []
    for top in ("core", "workers", "service", "flowsweep", "bench"):
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel == "flowsweep/status.py":
                continue
            found += [
                f"{rel}:{line}: {value!r}" for line, value in state_literals(path) if (rel, value) not in NOT_A_STATE
            ]
    assert not found, "import the state from flowsweep.status:\n" + "\n".join(found)
