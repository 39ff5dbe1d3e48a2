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
sometimes one ulp off (22.999998 for 23: :func:`retrieval.index.retrieve.hits_run` rounds them, so the stages'
runs are identical with either searcher, tests/retrieval/test_streamed_runs.py). The teacher and evaluate stages
search with the backend :func:`choose_backend` picks (config ``teacher.searcher`` / ``evaluate.searcher``: auto,
sparse or lucene). Memory: 8 bytes per stored impact once built (about 190 MiB for 100k passages of 250 terms),
about :data:`BUILD_BYTES_PER_IMPACT` at the peak of the build (the transposed copy and one row group of the
Parquet file being decoded), plus the product's hits per query batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow.parquet as pq

from core.errors import DiscoError
from models.impacts import quantise_lists

if TYPE_CHECKING:  # scipy is imported where a matrix is built: the stages' configs read `Backend` from here, and
    from scipy import sparse  # a fully cached run must not pay for scipy

Backend = Literal["auto", "sparse", "lucene"]
# Up to here the sparse product answers k=1000 faster than Lucene: measured 6.1x at 100k and 1.8x at 300k passages;
# Lucene stays at about 35-40 ms a query while the product grows with the corpus (about even at 1M), so they cross
# between about 550k and 1M passages (docs/benchmarks.md, "Retrieval backends")
SPARSE_MAX_PASSAGES = 500_000
SPARSE_MAX_MIB = 4096.0  # the most memory the sparse matrix may take while it is built
BUILD_BYTES_PER_IMPACT = 32  # measured: 29 at 100k passages (benchmarks/retrieval_backends.py), rounded up
BUILD_BATCH = 16_384  # passages read at a time while building the matrix
QUERY_BATCH = 64  # queries per product at most; fewer on large corpora:
PRODUCT_CELLS = 8_000_000  # queries x passages per product: bounds the hits held at once (8 queries at 1M passages)


class SparseSearcher:
    """``search({qid: {token: impact}}, k)`` -> ``{qid: [(doc_id, score), ...]}``, like :class:`ImpactSearcher`."""

    def __init__(self, doc_vectors: str | Path, scale: int, tokens: list[str]):
        pf = pq.ParquetFile(doc_vectors)
        self.doc_ids = np.asarray(pf.read(columns=["doc_id"]).column(0).to_pylist(), dtype=object)
        n = len(self.doc_ids)
        # D (passage-major CSR) filled BUILD_BATCH passages at a time, so only one batch's flattened lists exist
        # beside the final arrays; then transposed once into D^T (term-major, an inverted index)
        total = stored_impacts(pf)
        index_dtype = np.int32 if total < 2**31 else np.int64  # one dtype for both, or scipy copies to int64
        indptr = np.zeros(n + 1, dtype=index_dtype)
        indices = np.empty(total, dtype=index_dtype)
        data = np.empty(total, dtype=np.int32)
        row, nnz = 0, 0
        for batch in pf.iter_batches(batch_size=BUILD_BATCH, columns=["term_ids", "weights"]):
            # the index's impacts: round(w * scale) as models.splade.quantise_sparse computes them, zeros dropped
            counts, cols, impacts = quantise_lists(batch.column("term_ids"), batch.column("weights"), scale)
            kept = len(impacts)
            indices[nnz:nnz + kept], data[nnz:nnz + kept] = cols, impacts
            indptr[row + 1:row + 1 + len(counts)] = nnz + np.cumsum(counts)
            row, nnz = row + len(counts), nnz + kept
        from scipy import sparse

        self.vocab = {t: i for i, t in enumerate(tokens)}
        docs = sparse.csr_matrix((data[:nnz], indices[:nnz], indptr), shape=(n, len(tokens)))
        del data, indices
        docs.sum_duplicates()
        self.matrix = docs.T.tocsr()  # D^T: term-major, an inverted index
        del docs
        # Pyserini's LuceneImpactSearcher drops query terms whose idf log(N / df) is not > 0, i.e. the terms found in
        # every passage (it matters on small corpora); the same terms are dropped here, so both give the same hits
        self.usable = np.diff(self.matrix.indptr) < len(self.doc_ids)
        order = np.argsort(self.doc_ids.astype(str), kind="stable")
        self.tiebreak = np.empty(len(order), dtype=np.int64)
        self.tiebreak[order] = np.arange(len(order))  # rank of each passage's id, ascending

    @property
    def passages(self) -> int:
        return len(self.doc_ids)

    def terms(self) -> list[str]:
        """The tokens with at least one posting: no other query term can change a score."""
        tokens = list(self.vocab)
        return [tokens[i] for i in np.flatnonzero(np.diff(self.matrix.indptr))]

    def search(self, vectors: dict[str, dict[str, int]], k: int) -> dict[str, list[tuple[str, float]]]:
        qids = list(vectors)
        results: dict[str, list[tuple[str, float]]] = {q: [] for q in qids}
        size = max(1, min(QUERY_BATCH, PRODUCT_CELLS // max(self.passages, 1)))
        for start in range(0, len(qids), size):
            batch = qids[start:start + size]
            scores = (self._queries([vectors[q] for q in batch]) @ self.matrix).tocsr()
            for i, qid in enumerate(batch):
                lo, hi = scores.indptr[i], scores.indptr[i + 1]
                docs, vals = scores.indices[lo:hi], scores.data[lo:hi]
                hit = vals > 0
                results[qid] = self._top(docs[hit], vals[hit], k)
        return results

    def _queries(self, vecs: list[dict[str, int]]) -> sparse.csr_matrix:
        from scipy import sparse

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


def stored_impacts(doc_vectors: str | Path | pq.ParquetFile) -> int:
    """Number of (passage, term) weights in ``doc_vectors.parquet``, read from its metadata (no data is read)."""
    pf = doc_vectors if isinstance(doc_vectors, pq.ParquetFile) else pq.ParquetFile(doc_vectors)
    schema = pf.metadata.schema
    j = next(i for i in range(len(schema)) if schema.column(i).path.split(".")[0] == "term_ids")
    return sum(pf.metadata.row_group(g).column(j).num_values for g in range(pf.num_row_groups))


def sparse_mib(doc_vectors: str | Path) -> float:
    """Estimated peak memory of :class:`SparseSearcher` on ``doc_vectors``: its final matrix plus the copy made
    while transposing (:data:`BUILD_BYTES_PER_IMPACT`, measured by benchmarks/retrieval_backends.py)."""
    return stored_impacts(doc_vectors) * BUILD_BYTES_PER_IMPACT / 2**20


def choose_backend(doc_vectors: str | Path, backend: Backend = "auto", max_passages: int = SPARSE_MAX_PASSAGES,
                   max_mib: float = SPARSE_MAX_MIB) -> tuple[str, str]:
    """``("sparse" | "lucene", why)``: the searcher the teacher and evaluate stages use for an index.

    ``auto``: the sparse searcher when ``doc_vectors.parquet`` exists, holds at most ``max_passages`` passages
    (beyond that Lucene is faster, docs/benchmarks.md) and its estimated build peak fits in ``max_mib``; Lucene
    otherwise. ``sparse`` or ``lucene``: that one (``sparse`` without ``doc_vectors.parquet`` is an error)."""
    path = Path(doc_vectors)
    if backend == "lucene":
        return "lucene", "asked for (searcher=lucene)"
    if not path.exists():
        if backend == "sparse":
            raise DiscoError(f"searcher=sparse needs {path} (the index stage writes it); use searcher=lucene or auto")
        return "lucene", f"no {path.name}"
    if backend == "sparse":
        return "sparse", "asked for (searcher=sparse)"
    passages = pq.ParquetFile(path).metadata.num_rows
    if passages > max_passages:
        return "lucene", f"{passages} passages > {max_passages} (Lucene is faster there)"
    mib = sparse_mib(path)
    if mib > max_mib:
        return "lucene", f"the sparse matrix would need about {mib:.0f} MiB > {max_mib:.0f} MiB"
    return "sparse", f"{passages} passages <= {max_passages}, about {mib:.0f} MiB"


def open_searcher(lucene: str | Path, scale: int, tokens: list[str], threads: int = 2,
                  max_passages: int = SPARSE_MAX_PASSAGES, backend: Backend = "auto"):
    """The searcher :func:`choose_backend` picks for an index stage's output: :class:`SparseSearcher` on
    ``doc_vectors.parquet`` (beside ``lucene/``) or Pyserini's Lucene impact searcher on ``lucene/``."""
    vectors = Path(lucene).parent / "doc_vectors.parquet"
    if choose_backend(vectors, backend, max_passages)[0] == "sparse":
        return SparseSearcher(vectors, scale, tokens)
    from retrieval.index.search import ImpactSearcher

    return ImpactSearcher(lucene, threads=threads)
