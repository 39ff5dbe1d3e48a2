"""The sparse-matrix searcher returns what Pyserini's Lucene impact searcher returns: the same hits in the same
order (ties included) with the same integer scores, on hand-made ties and on the demo corpus through SPLADE-tiny."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import schema
from models.splade import SpladeConfig, SpladeEncoder, impact_vector, vocab_tokens
from retrieval.index.build import build_index
from retrieval.index.encode import encode_corpus
from retrieval.index.search import ImpactSearcher
from retrieval.index.sparse import SparseSearcher, open_searcher

DEMO = Path(__file__).resolve().parents[3] / "data" / "demo"
TOKENS = ["[PAD]", "mercury", "planet", "##s", "element", "bridge"]


def write_collection(root: Path, docs: list[tuple[str, dict[str, int]]]) -> Path:
    """A JsonVectorCollection and the doc_vectors.parquet of the same impacts (weights = impact / 100)."""
    (root / "collection").mkdir(parents=True)
    (root / "collection" / "docs-00000.jsonl").write_text(
        "".join(json.dumps({"id": d, "contents": "", "vector": v}) + "\n" for d, v in docs))
    rows = {"doc_id": [d for d, _ in docs], "term_ids": [[TOKENS.index(t) for t in v] for _, v in docs],
            "weights": [[np.float32(x / 100) for x in v.values()] for _, v in docs]}
    pq.write_table(pa.Table.from_pydict(rows, schema=schema.DOC_VECTORS), root / "doc_vectors.parquet")
    build_index(root / "collection", root / "lucene", threads=1)
    return root / "lucene"


def test_ties_and_scores_as_lucene(tmp_path):
    # equal scores inserted out of id order, ids whose string order differs from their number order
    docs = [("d3", {"mercury": 100}), ("d10", {"mercury": 100}), ("d1", {"mercury": 100, "bridge": 7}),
            ("d2", {"mercury": 50, "planet": 100}), ("x", {"bridge": 30}), ("d0", {"##s": 100}), ("a", {"mercury": 100})]
    lucene = write_collection(tmp_path, docs)
    queries = {"q1": {"mercury": 3}, "q2": {"mercury": 2, "planet": 1}, "q3": {"bridge": 5, "mercury": 1},
               "q4": {"element": 4}, "q5": {"unknown": 2}}
    want = ImpactSearcher(lucene).search(queries, k=10)
    fast = SparseSearcher(tmp_path / "doc_vectors.parquet", 100, TOKENS)
    for k in (1, 2, 3, 10):
        got = fast.search(queries, k)
        assert got == {q: hits[:k] for q, hits in want.items()}, k
    assert want["q1"][0] == ("a", 300.0) and want["q4"] == [] and want["q5"] == []


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo-index")
    rows = [json.loads(x) for x in (DEMO / "passages.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist([{"doc_id": r["id"], "title": r["title"], "text": r["text"]}
                                         for r in rows], schema=schema.CORPUS), root / "corpus.parquet")
    encode_corpus(root / "corpus.parquet", SpladeConfig(doc_max_length=128), root, shard_size=100_000)
    build_index(root / "collection", root / "lucene", threads=2)
    return root / "lucene"


@pytest.mark.slow  # indexes the demo: ~85 s loaded
def test_demo_top_k_equal_to_lucene(demo_index):
    enc = SpladeEncoder("splade-tiny", frozen=True)
    tokens = vocab_tokens(enc.tokenizer)
    convs = [json.loads(x) for x in (DEMO / "conversations.jsonl").read_text().splitlines()]
    texts = [t["question"] for c in convs for t in c["turns"]][:60] + ["mercury", "the", "?"]
    queries = {f"q{i}": impact_vector(ids, w, tokens) for i, (ids, w) in enumerate(enc.encode(texts, 64))}
    lucene = ImpactSearcher(demo_index, threads=2)
    fast = open_searcher(demo_index, 100, tokens)
    assert isinstance(fast, SparseSearcher) and fast.passages == 278
    for k in (10, 1000):
        want, got = lucene.search(queries, k), fast.search(queries, k)
        # same ids in the same order; Lucene's float32 sums sometimes give 22.999998 for the exact 23
        assert {q: [(d, round(s)) for d, s in h] for q, h in want.items()} == got
        assert all(abs(s - g) < 1e-5 * max(1.0, g) for q in want for (_, s), (_, g) in zip(want[q], got[q]))
    lucene.close()
    assert sum(len(v) for v in want.values()) > 5000  # long lists: ties among low scores are exercised
    assert isinstance(open_searcher(demo_index, 100, tokens, max_passages=100), ImpactSearcher)


def test_backend_rule(tmp_path):
    """auto: sparse up to the passage limit and the memory cap, Lucene beyond; explicit choices are obeyed; asking
    for sparse without doc_vectors.parquet is one clear error."""
    from core.errors import DiscoError
    from retrieval.index.sparse import choose_backend, sparse_mib, stored_impacts

    rows = {"doc_id": [f"d{i}" for i in range(50)], "term_ids": [list(range(i % 7 + 1)) for i in range(50)],
            "weights": [[0.5] * (i % 7 + 1) for i in range(50)]}
    path = tmp_path / "doc_vectors.parquet"
    pq.write_table(pa.Table.from_pydict(rows, schema=schema.DOC_VECTORS), path, row_group_size=16)
    assert stored_impacts(path) == sum(i % 7 + 1 for i in range(50))
    assert choose_backend(path)[0] == "sparse"
    assert choose_backend(path, max_passages=49)[0] == "lucene"
    assert choose_backend(path, max_mib=sparse_mib(path) / 2)[0] == "lucene"
    assert choose_backend(path, "lucene")[0] == "lucene"
    assert choose_backend(path, "sparse", max_passages=1)[0] == "sparse"
    assert choose_backend(tmp_path / "none.parquet")[0] == "lucene"
    with pytest.raises(DiscoError, match="searcher=sparse needs"):
        choose_backend(tmp_path / "none.parquet", "sparse")
    # built 16 passages at a time from row groups of 16: the same matrix as one pass
    fast = SparseSearcher(path, 100, [f"t{i}" for i in range(8)])
    assert fast.matrix.shape == (8, 50) and fast.matrix.nnz == stored_impacts(path)
    assert fast.search({"q": {"t6": 1}}, 3) == {"q": [("d13", 50.0), ("d20", 50.0), ("d27", 50.0)]}
