"""The README's stage table is the one generated from the declarations."""

from __future__ import annotations

import itertools
from pathlib import Path

from stages.graph import STAGES
from stages.table import stage_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_table_is_generated_from_the_declarations():
    readme = (ROOT / "README.md").read_text()
    assert stage_table() in readme, "README.md's stage table is stale: paste the output of `disco stages`"


def test_each_readme_row_says_what_its_declaration_says():
    """Read back from the README, independently of stage_table(): one row per stage in the graph's order, naming a
    file that declares it, its upstream stages, the config it reads and every output path."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| stage | declared in |")) + 2
    table = itertools.takewhile(lambda line: line.startswith("| "), lines[start:])
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in table]
    assert [r[0] for r in rows] == [s.name for s in STAGES]
    for (name, declared, needs, reads, _, outputs), s in zip(rows, STAGES):
        path = ROOT / declared.strip("`")
        assert path.is_file() and f'name="{s.name}"' in path.read_text(), (name, declared)
        assert set(needs.split(", ")) - {"-"} == set(s.upstream), name
        assert [r.strip("`") for r in reads.split(", ")] == [r.partition(" as ")[0] for r in s.reads], name
        assert all(f"`{p}" in outputs for p in s.outputs.values()), name
