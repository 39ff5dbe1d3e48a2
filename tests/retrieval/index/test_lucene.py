"""A real Lucene impact index through Pyserini: exact scores on a tiny committed-in-test collection."""

from __future__ import annotations

import json

import pytest

from retrieval.index.build import build_index
from retrieval.index.search import ImpactSearcher

DOCS = [
    {"id": "d1", "contents": "", "vector": {"mercury": 120, "planet": 80, "##s": 10}},
    {"id": "d2", "contents": "", "vector": {"mercury": 50, "element": 90}},
    {"id": "d3", "contents": "", "vector": {"bridge": 100}},
]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("lucene")
    (root / "coll").mkdir()
    (root / "coll" / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    build_index(root / "coll", root / "idx", threads=1)
    return root / "idx"


def test_impact_scores_are_exact_dot_products(index):
    s = ImpactSearcher(index)
    hits = s.search({"q1": {"mercury": 100, "planet": 50}, "q2": {"element": 10, "##s": 3},
                     "q3": {"unknown": 5}}, k=10)
    assert hits["q1"] == [("d1", 100 * 120 + 50 * 80), ("d2", 100 * 50)]
    assert hits["q2"] == [("d2", 900.0), ("d1", 30.0)]
    assert hits["q3"] == []
    s.close()


def test_build_failure_is_a_clear_error(tmp_path):
    from core.errors import DiscoError

    with pytest.raises(DiscoError, match="Lucene indexing of"):
        build_index(tmp_path / "coll", tmp_path / "idx", threads=1)
