"""The passage vectors read without a Python object per weight equal the per-passage path they replaced:
``models.selection.quantised_matrix`` (the dev set's corpus matrix) and ``retrieval.systems.document_terms``
(FLOPS) against :func:`models.splade.quantise_sparse` applied row by row, on vectors of real SPLADE-tiny shape
(int32 term ids, float32 weights, some rounding to zero or below)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from core import schema
from models.selection import quantised_matrix
from models.splade import quantise_sparse
from retrieval.systems import document_terms

VOCAB = 30522


def _vectors(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids, terms, weights = [], [], []
    for i in range(n):
        k = 0 if i == 3 else int(rng.integers(1, 40))  # passage 3 has no term at all
        terms.append(np.sort(rng.choice(VOCAB, k, replace=False)).astype(np.int32).tolist())
        w = rng.choice([0.001, 0.004, 0.005, 0.006, 0.3, 1.7, 2.345], k).astype(np.float32)  # 0.004/0.005 -> 0
        if i == 5:
            w[:] = 0.002  # every weight rounds to 0: an empty row
        weights.append(w.tolist())
        ids.append(f"d{i:03d}")
    return pa.Table.from_pydict({"doc_id": ids, "term_ids": terms, "weights": weights}, schema=schema.DOC_VECTORS)


def _reference_matrix(table: pa.Table, scale: int) -> sp.csr_matrix:
    """The dev set's matrix as it was built before: quantise_sparse per passage over Python lists."""
    quantised = [quantise_sparse(np.asarray(t), np.asarray(w), scale)
                 for t, w in zip(table["term_ids"].to_pylist(), table["weights"].to_pylist())]
    indptr = np.cumsum([0, *(len(t) for t, _ in quantised)])
    return sp.csr_matrix((np.concatenate([q for _, q in quantised]) if quantised else np.zeros(0, np.int32),
                          np.concatenate([t for t, _ in quantised]).astype(np.int64) if quantised else
                          np.zeros(0, np.int64), indptr), shape=(table.num_rows, VOCAB))


def _same(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.indptr, b.indptr)
            and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data))


def test_quantised_matrix_equals_the_per_passage_path():
    table = _vectors(50)
    for scale in (100, 7):
        ref = _reference_matrix(table, scale)
        assert ref.nnz > 0 and ref.indptr[4] == ref.indptr[3] and ref.indptr[6] == ref.indptr[5]  # empty rows
        for batch in (1, 3, 16, 1000):  # one passage per batch .. everything in one
            got = quantised_matrix(table.to_batches(max_chunksize=batch), scale, VOCAB)
            assert _same(got, ref), (scale, batch)
    assert _same(quantised_matrix([], 100, VOCAB), _reference_matrix(table.slice(0, 0), 100))


def test_document_terms_equals_the_per_passage_path(tmp_path):
    table = _vectors(40, seed=1)
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=25)  # the first row group: 25 passages
    first = table.slice(0, 25)
    for limit in (20_000, 10, 0):
        ref = [quantise_sparse(np.asarray(t), np.asarray(w), 100)[0]
               for t, w in zip(first["term_ids"].to_pylist()[:limit], first["weights"].to_pylist()[:limit])]
        got = document_terms(tmp_path / "v.parquet", 100, limit)
        assert len(got) == len(ref) == min(limit, 25)
        assert all(g.dtype == r.dtype and np.array_equal(g, r) for g, r in zip(got, ref))
