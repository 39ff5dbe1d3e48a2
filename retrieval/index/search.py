"""Search a Lucene impact index with precomputed, quantised query vectors (Pyserini's LuceneImpactSearcher)."""

from __future__ import annotations

from pathlib import Path

from retrieval.index.java import lucene_impact_searcher


class _Precomputed:
    """A Pyserini query encoder whose ``encode(qid)`` returns that query's ``{term: int}`` vector."""

    def __init__(self, vectors: dict[str, dict[str, int]]):
        self.vectors = vectors

    def encode(self, qid: str) -> dict[str, int]:
        return self.vectors[qid]


class ImpactSearcher:
    """One open index. ``search({qid: {term: weight}}, k)`` -> ``{qid: [(doc_id, score), ...]}``, best first.

    Scores are Lucene's integer dot products of quantised weights; divide by ``scale**2`` for the float score.
    """

    def __init__(self, index_dir: str | Path, threads: int = 1):
        LuceneImpactSearcher = lucene_impact_searcher()
        self._searcher = LuceneImpactSearcher(str(index_dir), query_encoder=_Precomputed({}))
        self.index_dir = Path(index_dir)
        self.threads = threads

    def terms(self) -> list[str]:
        """The tokens with at least one posting (the index's term dictionary): no other query term can change a
        score."""
        from pyserini.index.lucene import LuceneIndexReader  # Java is set up: the searcher is open

        reader = LuceneIndexReader(str(self.index_dir))
        try:
            return [t.term for t in reader.terms()]
        finally:
            reader.reader.close()  # the Java IndexReader (Pyserini's wrapper has no close)

    def search(self, vectors: dict[str, dict[str, int]], k: int) -> dict[str, list[tuple[str, float]]]:
        qids = list(vectors)
        self._searcher.query_encoder = _Precomputed(vectors)
        results: dict[str, list[tuple[str, float]]] = {q: [] for q in qids}
        if not qids:
            return results
        hits = self._searcher.batch_search(qids, qids, k=k, threads=self.threads)
        for qid, docs in hits.items():
            results[qid] = [(h.docid, float(h.score)) for h in docs]
        return results

    def close(self) -> None:
        self._searcher.close()
