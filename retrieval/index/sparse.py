"""Exact impact search as a sparse matrix product, for corpora small enough to hold as one CSR matrix.

The same search as the Lucene impact index (score = dot product of the quantised query and document impacts,
only documents sharing a term with the query are hits), computed as ``Q @ D^T`` with scipy (term-major ``D^T``,
so the product is an inverted-index accumulation) and a top-k partition per query. Like Pyserini, query terms that
occur in every passage (idf 0) are left out. Ties are broken as Pyserini's
``LuceneImpactSearcher`` breaks them (tests/retrieval/index/test_sparse.py checks it against Lucene): by the
external document id, ascending. Lucene holds scores in float32, so the two agree exactly while a score stays
under 2**24 (impacts are about 100-300, so far beyond any real query).

Status: the same hits in the same order as Lucene on hand-made ties and on the demo corpus (63 queries, k=10 and
1000; tests/retrieval/index/test_sparse.py); scores are the exact integers, where Lucene's float32 sums are
sometimes one ulp off (22.999998 for 23). The teacher and evaluate stages do not use it yet (not run end to end
with it); :func:`open_searcher` is the switch they would call (sparse up to :data:`SPARSE_MAX_PASSAGES`). Memory: about 8 bytes per stored impact (250 per passage: 400 MB at
200k passages), plus the product's hits per query batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import sparse

SPARSE_MAX_PASSAGES = 200_000
QUERY_BATCH = 64  # queries per product: bounds the hits held at once


class SparseSearcher:
    """``search({qid: {token: impact}}, k)`` -> ``{qid: [(doc_id, score), ...]}``, like :class:`ImpactSearcher`."""

    def __init__(self, doc_vectors: str | Path, scale: int, tokens: list[str]):
        table = pq.read_table(doc_vectors, columns=["doc_id", "term_ids", "weights"])
        self.doc_ids = np.asarray(table.column("doc_id").to_pylist(), dtype=object)
        terms = table.column("term_ids").combine_chunks()
        weights = table.column("weights").combine_chunks()
        lengths = pc.list_value_length(terms).to_numpy(zero_copy_only=False).astype(np.int64)
        cols = pc.list_flatten(terms).to_numpy().astype(np.int32)
        # the index's impacts: round(w * scale) as models.splade.quantise_sparse computes them, zeros dropped
        impacts = np.rint(pc.list_flatten(weights).to_numpy().astype(np.float64) * scale).astype(np.int32)
        rows = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
        keep = impacts > 0
        self.vocab = {t: i for i, t in enumerate(tokens)}
        shape = (len(tokens), len(self.doc_ids))  # D^T: term-major, an inverted index
        self.matrix = sparse.csr_matrix((impacts[keep], (cols[keep], rows[keep])), shape=shape)
        self.matrix.sum_duplicates()
        # Pyserini's LuceneImpactSearcher drops query terms whose idf log(N / df) is not > 0, i.e. the terms found in
        # every passage (it matters on small corpora); the same terms are dropped here, so both give the same hits
        self.usable = np.diff(self.matrix.indptr) < len(self.doc_ids)
        order = np.argsort(self.doc_ids.astype(str), kind="stable")
        self.tiebreak = np.empty(len(order), dtype=np.int64)
        self.tiebreak[order] = np.arange(len(order))  # rank of each passage's id, ascending

    @property
    def passages(self) -> int:
        return len(self.doc_ids)

    def search(self, vectors: dict[str, dict[str, int]], k: int) -> dict[str, list[tuple[str, float]]]:
        qids = list(vectors)
        results: dict[str, list[tuple[str, float]]] = {q: [] for q in qids}
        for start in range(0, len(qids), QUERY_BATCH):
            batch = qids[start:start + QUERY_BATCH]
            scores = (self._queries([vectors[q] for q in batch]) @ self.matrix).tocsr()
            for i, qid in enumerate(batch):
                lo, hi = scores.indptr[i], scores.indptr[i + 1]
                docs, vals = scores.indices[lo:hi], scores.data[lo:hi]
                hit = vals > 0
                results[qid] = self._top(docs[hit], vals[hit], k)
        return results

    def _queries(self, vecs: list[dict[str, int]]) -> sparse.csr_matrix:
        rows, cols, vals = [], [], []
        for i, vec in enumerate(vecs):
            for token, w in vec.items():
                j = self.vocab.get(token)
                if j is not None and w > 0 and self.usable[j]:
                    rows.append(i), cols.append(j), vals.append(w)
        return sparse.csr_matrix((np.asarray(vals, dtype=np.int64), (rows, cols)),
                                 shape=(len(vecs), len(self.vocab)))

    def _top(self, docs: np.ndarray, vals: np.ndarray, k: int) -> list[tuple[str, float]]:
        if len(vals) > k:  # everything scoring at least the k-th best, then the exact order
            kth = np.partition(vals, len(vals) - k)[len(vals) - k]
            keep = vals >= kth
            docs, vals = docs[keep], vals[keep]
        order = np.lexsort((self.tiebreak[docs], -vals))[:k]
        return [(self.doc_ids[d], float(v)) for d, v in zip(docs[order], vals[order])]

    def close(self) -> None:
        pass


def open_searcher(lucene: str | Path, scale: int, tokens: list[str], threads: int = 2,
                  max_passages: int = SPARSE_MAX_PASSAGES):
    """The faster exact backend for an index stage's output: :class:`SparseSearcher` on ``doc_vectors.parquet``
    (beside ``lucene/``) up to ``max_passages`` passages, Pyserini's Lucene impact searcher beyond."""
    vectors = Path(lucene).parent / "doc_vectors.parquet"
    if vectors.exists() and pq.ParquetFile(vectors).metadata.num_rows <= max_passages:
        return SparseSearcher(vectors, scale, tokens)
    from retrieval.index.search import ImpactSearcher

    return ImpactSearcher(lucene, threads=threads)
