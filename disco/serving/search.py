"""Search with a trained DiSCo student: one conversation (or many) in, the top-k passages out.

The query-time side of DiSCo (Lupart et al., SIGIR 2025, arXiv 2410.14609): the student reads the whole
conversation and its sparse vector searches the impact index directly, with no LLM rewrite. The conversation is
formatted by the student's own card (:class:`models.student.StudentCard`, the code used in training) and the
query is quantised like the documents (``round(w * quant_scale)``), exactly as the evaluate stage does, so
:meth:`Searcher.search` reproduces the evaluate stage's ``disco`` run for the same turn. The query vector keeps
only the terms that have postings in the index (``index_terms``, the default): no other term can change a score,
and the encoder then screens and projects only those rows of its vocabulary (a third on the demo's index), so a
query costs less; the hits and scores are those of the full vector.

No Prefect here: this module imports ``core/``, ``models/`` and ``retrieval.index`` only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch

from core.errors import DiscoError
from disco.serving.batching import BatchConfig, Job, MicroBatcher, bucketed_batches, pad_group
from retrieval.index.search import ImpactSearcher
from retrieval.index.sparse import Backend, SparseSearcher, choose_backend
from models.splade import SpladeEncoder, impact_vector, vocab_tokens
from models.student import StudentCard
from disco.serving.schema import Hit, Result, Turn, check_conversation, run_paths  # noqa: F401 (the API's types)


def open_index(index: str | Path, scale: int, tokens: list[str], backend: Backend = "auto", threads: int = 1):
    """The searcher for an index stage's ``lucene/`` folder: the backend :func:`~retrieval.index.sparse.choose_backend`
    picks (the teacher and evaluate stages' rule), the sparse one only once its impacts (``doc_vectors.parquet``
    beside ``lucene/``, quantised with ``scale``) are checked equal to the Lucene collection's; with ``"auto"`` a
    mismatch falls back to Lucene, with ``"sparse"`` it is an error."""
    vectors = Path(index).parent / "doc_vectors.parquet"
    if choose_backend(vectors, backend)[0] == "lucene":
        return ImpactSearcher(index, threads=threads)
    sparse = SparseSearcher(vectors, scale, tokens)
    mismatch = _impact_mismatch(sparse, tokens, Path(index).parent / "collection")
    if mismatch is None:
        return sparse
    if backend == "sparse":
        raise DiscoError(f"{vectors}: {mismatch}; the sparse backend would not reproduce the index (use --backend "
                         "lucene)")
    return ImpactSearcher(index, threads=threads)


def _impact_mismatch(sparse: SparseSearcher, tokens: list[str], collection: Path) -> str | None:
    """Why the sparse matrix's impacts differ from the first passage of the Lucene collection, or ``None``."""
    shards = sorted(collection.glob("*.jsonl"))
    if not shards:
        return f"no collection shards in {collection} to check the quantisation against"
    with open(shards[0], encoding="utf-8") as f:
        doc = json.loads(f.readline())
    found = np.flatnonzero(sparse.doc_ids == doc["id"])
    if not len(found):
        return f"passage {doc['id']!r} of {shards[0].name} is not in the document vectors"
    column = sparse.matrix[:, int(found[0])].tocoo()
    mine = {tokens[i]: int(v) for i, v in zip(column.row, column.data)}
    theirs = {t: int(v) for t, v in doc["vector"].items() if int(v) > 0}
    if mine != theirs:
        return (f"passage {doc['id']!r}: impacts differ from {shards[0].name} ({len(mine)} vs {len(theirs)} terms;"
                " another quant_scale?)")
    return None


class Searcher:
    """A loaded student, its index and the passage texts; safe to share between threads.

    Encoding and the JVM searcher's query table are not thread-safe, so every encode + search runs on one
    dedicated worker thread (:class:`~disco.serving.batching.MicroBatcher`), which encodes the conversations
    queued together in one pass without padding (:mod:`models.packed`). One thread (rather than a lock taken
    by whichever request thread comes) also keeps torch's allocations in one malloc arena: with a lock, the
    server's resident memory crept up by about 100 MiB per 5,000 requests at 16 concurrent clients
    (``benchmarks/service.py``), with the worker it stays flat.
    """

    def __init__(self, student: str | Path, index: str | Path, corpus: str | Path | None = None,
                 threads: int = 1, backend: Backend = "auto", batching: BatchConfig | None = None,
                 index_terms: bool = True):
        self.card = StudentCard.load(student)
        self.encoder = SpladeEncoder(str(student), frozen=True)
        self.encoder.tokenizer.truncation_side = self.card.input.truncation_side()  # this searcher's own copy
        self.tokens = vocab_tokens(self.encoder.tokenizer)
        self.index = open_index(index, self.card.quant_scale, self.tokens, backend, threads)
        self.backend = "sparse" if isinstance(self.index, SparseSearcher) else "lucene"
        self.terms: torch.Tensor | None = None  # the vocabulary ids the query vectors keep (None: all)
        if index_terms:
            ids = {t: i for i, t in enumerate(self.tokens)}
            self.terms = torch.tensor(sorted(ids[t] for t in self.index.terms() if t in ids), dtype=torch.long)
        self.encoder.screen(self.terms)  # built now (models/screen.py), not by the first request
        self.passages: dict[str, tuple[str, str]] = {}
        if corpus is not None:
            table = pq.read_table(corpus, columns=["doc_id", "title", "text"]).to_pydict()
            self.passages = {d: (t or "", x or "") for d, t, x in zip(table["doc_id"], table["title"],
                                                                      table["text"])}
        self.batching = batching or BatchConfig()
        self.batcher = MicroBatcher(self._work, self.batching)

    @classmethod
    def open(cls, run_dir: str | Path, threads: int = 1, backend: Backend = "auto",
             batching: BatchConfig | None = None, index_terms: bool = True) -> "Searcher":
        """The searcher of a finished ``disco run`` folder."""
        p = run_paths(run_dir)
        return cls(p["student"], p["lucene"], p["corpus"], threads=threads, backend=backend, batching=batching,
                   index_terms=index_terms)

    def text(self, conversation: Sequence[Any]) -> str:
        """The student's input for a conversation (oldest first, the last turn the current question)."""
        turns = check_conversation(conversation)
        history = [{"role": t.speaker, "text": t.text} for t in turns[:-1]]
        return self.card.text(turns[-1].text, history)

    def query_vectors(self, texts: Sequence[str]) -> list[dict[str, int]]:
        """Quantised ``{token: impact}`` vectors of the student's input texts (as at evaluation): all texts in one
        pass without padding (:meth:`SpladeEncoder.sparse_packed`), or where that does not apply, one padded
        forward pass per group of texts of the same padded length; a text's vector is the same whatever the batch."""
        tok = self.encoder.tokenizer
        ids = tok(list(texts), truncation=True, max_length=self.card.max_length)
        with torch.inference_mode():
            packed = self.encoder.sparse_packed(ids["input_ids"], ids.get("token_type_ids"), self.terms)
        if packed is not None:
            return [impact_vector(terms, weights, self.tokens, self.card.quant_scale) for terms, weights in packed]
        out: list[dict[str, int]] = [{} for _ in texts]
        cfg = self.batching
        for group in bucketed_batches([len(x) for x in ids["input_ids"]], cfg.bucket_tokens, cfg.max_batch):
            batch = pad_group(dict(ids), group, cfg.bucket_tokens, tok.pad_token_id, tok.pad_token_type_id,
                              tok.padding_side)
            if batch is None:  # a tokenizer with other outputs: its own padding
                batch = dict(tok.pad({key: [ids[key][i] for i in group] for key in ids.keys()},
                                     pad_to_multiple_of=cfg.bucket_tokens, return_tensors="pt"))
            with torch.inference_mode():  # the encoder's own pooling: screened projection, residual branch
                vectors = self.encoder.sparse(batch, self.terms)
            for i, (terms, weights) in zip(group, vectors):
                out[i] = impact_vector(terms, weights, self.tokens, self.card.quant_scale)
        return out

    def search(self, conversation: Sequence[Any], k: int = 10, explain: bool = False) -> Result:
        """The top-``k`` passages for the conversation's last (user) turn."""
        return self.search_batch([conversation], k, explain)[0]

    def search_batch(self, conversations: Sequence[Sequence[Any]], k: int = 10, explain: bool = False
                     ) -> list[Result]:
        """Top-``k`` passages for each conversation, encoded and searched with the requests queued beside them."""
        texts, futures = self._submit(conversations, k)
        return [self._result(text, *f.result(), explain) for text, f in zip(texts, futures)]

    async def asearch_batch(self, conversations: Sequence[Sequence[Any]], k: int = 10, explain: bool = False
                            ) -> list[Result]:
        """:meth:`search_batch` for an event loop: waits without holding a thread (the HTTP service's path)."""
        import asyncio

        texts, futures = self._submit(conversations, k)
        answers = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        return [self._result(text, *answer, explain) for text, answer in zip(texts, answers)]

    def submit(self, conversations: Sequence[Sequence[Any]], k: int) -> tuple[list[str], list]:
        """Queue the conversations on the worker: their student input texts and the futures of their answers
        (turned into results by :meth:`answer`); the service queues under its slot's lock (app.SearcherSlot)."""
        return self._submit(conversations, k)

    def answer(self, text: str, answer: tuple, explain: bool = False) -> Result:
        """The :class:`Result` of one answered future of :meth:`submit`."""
        return self._result(text, *answer, explain)

    def _submit(self, conversations: Sequence[Sequence[Any]], k: int) -> tuple[list[str], list]:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        texts = [self.text(c) for c in conversations]
        return texts, self.batcher.submit([Job(t, k) for t in texts])

    def _result(self, text: str, vec: dict[str, int], hits: list, timing: dict, explain: bool) -> Result:
        scale = self.card.quant_scale
        rows = [Hit(id=d, score=s / scale**2, title=self.passages.get(d, ("", ""))[0],
                    text=self.passages.get(d, ("", ""))[1]) for d, s in hits]
        terms = ({t: w / scale for t, w in sorted(vec.items(), key=lambda x: -x[1])} if explain else None)
        return Result(results=rows, timing_ms=timing, query=text, terms=terms)

    def _work(self, jobs: list[Job]) -> None:
        """One batch, on the worker thread: encode, search (one call per k), answer each job."""
        t0 = time.perf_counter()
        cfg = self.batching  # threads set here: OpenMP's thread count belongs to the thread that sets it
        threads = (cfg.batch_threads or cfg.threads) if len(jobs) > 1 else cfg.threads
        if threads and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        vectors = self.query_vectors([j.text for j in jobs])
        t1 = time.perf_counter()
        hits: dict[str, list] = {}
        for k in sorted({j.k for j in jobs}):
            hits.update(self.index.search({str(i): v for i, (j, v) in enumerate(zip(jobs, vectors))
                                           if v and j.k == k}, k))
        t2 = time.perf_counter()
        share = 1000 / len(jobs)  # a batch's time, shared equally by its conversations
        timing = {"encode": (t1 - t0) * share, "search": (t2 - t1) * share, "total": (t2 - t0) * share}
        for i, (j, v) in enumerate(zip(jobs, vectors)):
            j.future.set_result((v, hits.get(str(i), []), dict(timing)))

    def close(self) -> None:
        """Finish the queued requests, then close the index."""
        self.batcher.close(self.index.close)
