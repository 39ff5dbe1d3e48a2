"""The README's stage table is the one generated from the declarations."""

from __future__ import annotations

from pathlib import Path

from stages.graph import STAGES
from stages.table import stage_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_table_is_generated_from_the_declarations():
    readme = (ROOT / "README.md").read_text()
    assert stage_table() in readme, "README.md's stage table is stale: paste the output of `disco stages`"
    for s in STAGES:
        assert f"| {s.name} | `stages/{s.name}.py` |" in stage_table()
