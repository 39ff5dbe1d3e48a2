"""MTRAG (IBM mt-rag-benchmark, ``mtrag-human``): the retrieval tasks of the 110 human-written conversations.

Layout (``root`` is the folder holding ``mtrag-human/``, or ``mtrag-human`` itself)::

    mtrag-human/retrieval_tasks/<domain>/<domain>_questions.jsonl   {_id, text}: every user turn so far, each line
                                                                    "|user|: ...", the current question last
    mtrag-human/retrieval_tasks/<domain>/<domain>_rewrite.jsonl     {_id, text}: the standalone rewrite
    mtrag-human/retrieval_tasks/<domain>/qrels/dev.tsv              BEIR qrels (query-id, corpus-id, score)
    mtrag-human/evaluations/reference_subset_with_human_evaluations.json
        {documents: [{document_id, text, title}], tasks: [{task_id, targets, ...}]}: 350 passage texts and the
        reference answers of 159 tasks

Domains: ``clapnq`` (Wikipedia), ``fiqa`` (finance), ``govt``, ``cloud`` (IBM Cloud docs). A task id is
``<conversation><::><turn>``. The conversations are not MTRAG-UN's (no id is shared), the passages are from the
same corpora.

The full corpora are not part of the benchmark's repository (Git-LFS archives): the corpus here is the passages
whose texts the evaluation subset carries and, when ``mtragun-human`` is beside ``mtrag-human`` (as in
../shared/data/mtrag), MTRAG-UN's gold passages from the same corpora; only the qrels naming one of them are kept,
and only those turns have a positive (clapnq 56, fiqa 53, govt 37, cloud 42).
Every turn has its human rewrite; the reference answer is there for the subset's tasks only. The history is the
user's turns (the agent's are not in the retrieval tasks).

Options: ``collections`` keeps these domains only (default all four; ``ibmcloud`` is ``cloud``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from retrieval.datasets._common import as_id, read_beir_qrels
from retrieval.datasets.base import DatasetReader, Passage, Qrel, Turn, field_of, read_jsonl, register
from retrieval.datasets.mtrag import MtragUnReader
from core.errors import DataError

DOMAINS = ("clapnq", "fiqa", "govt", "cloud")
_ALIASES = {"ibmcloud": "cloud"}
_SUBSET = "evaluations/reference_subset_with_human_evaluations.json"
_USER = re.compile(r"^\|user\|:\s?", re.MULTILINE)


@register
class MtragHumanReader(DatasetReader):
    name = "mtrag"

    def __init__(self, root: str | Path, collections: list[str] | None = None):
        super().__init__(root)
        self.base = self.root / "mtrag-human" if (self.root / "mtrag-human").is_dir() else self.root
        if isinstance(collections, str):
            collections = [collections]
        wanted = [_ALIASES.get(c.lower(), c.lower()) for c in (collections or DOMAINS)]
        unknown = sorted(set(wanted) - set(DOMAINS))
        if unknown:
            raise DataError(self.root, f"unknown MTRAG collection(s) {unknown}; known: {', '.join(DOMAINS)}")
        self.domains = [d for d in DOMAINS if d in wanted]
        self._subset: tuple[dict[str, Passage], dict[str, str]] | None = None

    def _file(self, domain: str, name: str) -> Path:
        return self.require(str((self.base / "retrieval_tasks" / domain / name).relative_to(self.root)))

    def _texts(self, domain: str, kind: str) -> Iterator[tuple[Path, int, str, list[str]]]:
        """(path, line, task id, user utterances) of ``<domain>_<kind>.jsonl``."""
        path = self._file(domain, f"{domain}_{kind}.jsonl")
        for line, obj in read_jsonl(path):
            task_id = as_id(field_of(obj, "_id", path, line), "_id", path, line)
            parts = [p.strip() for p in _USER.split(field_of(obj, "text", path, line))]
            parts = [p for p in parts if p]
            if not parts:
                raise DataError(path, "field 'text' holds no '|user|:' utterance", line=line, record=task_id)
            yield path, line, task_id, parts

    def _evaluation_subset(self) -> tuple[dict[str, Passage], dict[str, str]]:
        """The subset's passages by id and reference answers by task id (read once)."""
        if self._subset is None:
            path = self.require(str((self.base / _SUBSET).relative_to(self.root)))  # the passage texts
            try:
                data: Any = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise DataError(path, f"malformed JSON ({e.msg} at column {e.colno})", line=e.lineno) from None
            if not isinstance(data, dict) or not isinstance(data.get("documents"), list):
                raise DataError(path, "expected an object with a 'documents' list")
            passages: dict[str, Passage] = {}
            for i, d in enumerate(data["documents"], start=1):
                if not isinstance(d, dict):
                    raise DataError(path, f"documents[{i}] should be an object")
                doc_id = as_id(field_of(d, "document_id", path, None), "document_id", path, None)
                passages[doc_id] = Passage(doc_id, field_of(d, "text", path, None).strip(),
                                           str(d.get("title") or "").strip(), where=(str(path), None))
            if (self.base.parent / "mtragun-human").is_dir():  # MTRAG-UN's gold passages, read by its own reader
                for p in MtragUnReader(self.base.parent).passages():
                    passages.setdefault(p.doc_id, p)
            answers: dict[str, str] = {}
            for t in data.get("tasks") or []:
                targets = t.get("targets") if isinstance(t, dict) else None
                if targets and isinstance(targets[0], dict) and isinstance(targets[0].get("text"), str):
                    answers[str(t.get("task_id"))] = targets[0]["text"].strip()
            self._subset = passages, answers
        return self._subset

    def _qrels(self) -> Iterator[Qrel]:
        """Every qrel of the kept domains, whether or not its passage text is here."""
        for domain in self.domains:
            yield from read_beir_qrels(self._file(domain, "qrels/dev.tsv"))

    # -- the three streams ---------------------------------------------------------------------------------
    def turns(self) -> Iterator[Turn]:
        _, answers = self._evaluation_subset()
        for domain in self.domains:
            rewrites = {t: " ".join(p) for _, _, t, p in self._texts(domain, "rewrite")}
            for path, line, task_id, parts in self._texts(domain, "questions"):
                conv, sep, turn = task_id.rpartition("<::>")
                if not sep or not turn.isdigit():
                    raise DataError(path, f"_id {task_id!r}: expected '<conversation><::><turn number>'", line=line)
                yield Turn(conversation_id=conv, turn=int(turn), question=parts[-1],
                           history=[("user", p) for p in parts[:-1]], answer=answers.get(task_id),
                           human_rewrite=rewrites.get(task_id), turn_id=task_id, where=(str(path), line))

    def passages(self) -> Iterator[Passage]:
        texts, _ = self._evaluation_subset()
        named = {q.doc_id for q in self._qrels()}
        yield from (p for doc_id, p in texts.items() if doc_id in named)

    def qrels(self) -> Iterator[Qrel]:
        texts, _ = self._evaluation_subset()
        yield from (q for q in self._qrels() if q.doc_id in texts)
