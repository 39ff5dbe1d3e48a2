"""MTRAG-UN (IBM mt-rag-benchmark, ``mtragun-human``): multi-turn RAG tasks with gold passages and BEIR qrels.

Layout (``root`` is the folder holding ``mtragun-human/``, or ``mtragun-human`` itself)::

    mtragun-human/generation_tasks/reference.jsonl   one task per line
    mtragun-human/retrieval_tasks/qrels/*.tsv        BEIR qrels: query-id <tab> corpus-id <tab> score (header line)

A task: ``conversation_id``, ``task_id`` (``<conv><::><turn>``, also the qrels query id), ``turn``, ``input`` (the
conversation so far as ``{speaker: user|agent, text}``, ending with the current user question), ``targets``
(reference answers), ``contexts`` (gold passages ``{document_id, text[, title]}``) and ``Collection``.

Turns are all tasks (qrels exist only for some); the corpus is the union of the gold passages (an id repeated
with the same text is one passage; with a different text it is an error). There are no human rewrites.

Options: ``collections`` keeps only the tasks of these collections (e.g. ``["clapnq"]``);
``split_by_collection`` sets each turn's split from its collection (e.g. ``{"clapnq": "train", "fiqa": "test"}``),
for train-on-one / evaluate-on-another experiments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from retrieval.datasets._common import as_id, opt_field, read_beir_qrels, text_of
from retrieval.datasets.base import DatasetReader, Passage, Qrel, Turn, field_of, read_jsonl, register
from core.errors import DataError

_TASKS = "generation_tasks/reference.jsonl"
_QRELS = "retrieval_tasks/qrels"
_ROLES = {"user": "user", "agent": "agent", "assistant": "agent", "system": "agent"}
_TASK_FIELDS = (
    "conversation_id", "task_id", "turn", "input", "targets", "contexts", "Collection",
    "task_type", "dataset", "answerability", "Question Type", "Multi-Turn",
)  # fmt: skip


@register
class MtragUnReader(DatasetReader):
    name = "mtrag-un"

    def __init__(
        self,
        root: str | Path,
        collections: list[str] | None = None,
        split_by_collection: dict[str, str] | None = None,
    ):
        super().__init__(root)
        self.base = self.root / "mtragun-human" if (self.root / "mtragun-human").is_dir() else self.root
        if isinstance(collections, str):
            collections = [collections]
        self.collections = {c.lower() for c in collections} if collections else None
        self.split_by_collection = {k.lower(): v for k, v in (split_by_collection or {}).items()}

    # -- tasks ---------------------------------------------------------------------------------------------
    def _tasks_path(self) -> Path:
        path = self.base / _TASKS
        if not path.exists():
            raise DataError(path, f"missing: an {self.name} dataset needs this file (folder {self.root})")
        return path

    def _tasks(self) -> Iterator[tuple[Path, int, dict[str, Any], str, str]]:
        """(path, line, task, task_id, collection) for each task of a kept collection."""
        path = self._tasks_path()
        for line, obj in read_jsonl(path):
            task_id = as_id(field_of(obj, "task_id", path, line), "task_id", path, line)
            collection = field_of(obj, "Collection", path, line).strip().lower()
            if self.collections is not None and collection not in self.collections:
                continue
            yield path, line, obj, task_id, collection

    def turns(self) -> Iterator[Turn]:
        for path, line, obj, task_id, collection in self._tasks():
            conv = as_id(field_of(obj, "conversation_id", path, line), "conversation_id", path, line)
            turn_no = field_of(obj, "turn", path, line, int)
            messages = field_of(obj, "input", path, line, list)
            if not messages:
                raise DataError(path, "field 'input' is empty: no user question", line=line, record=task_id)
            exchanges: list[tuple[str, str]] = []
            for i, m in enumerate(messages, start=1):
                if not isinstance(m, dict):
                    raise DataError(path, f"input message {i} should be an object", line=line, record=task_id)
                speaker = field_of(m, "speaker", path, line)
                role = _ROLES.get(speaker.strip().lower())
                if role is None:
                    raise DataError(
                        path, f"input message {i}: unknown speaker {speaker!r} (expected user or agent)",
                        line=line, record=task_id,
                    )  # fmt: skip
                text = text_of(field_of(m, "text", path, line), f"input message {i} text", path, line, task_id)
                exchanges.append((role, text))
            if exchanges[-1][0] != "user":
                raise DataError(path, "the last input message should be the user's question", line=line, record=task_id)
            targets = opt_field(obj, "targets", path, line, list, _TASK_FIELDS, task_id) or []
            answer = None
            if targets:
                first = targets[0]
                answer = first.get("text") if isinstance(first, dict) else first
                if answer is not None and not isinstance(answer, str):
                    raise DataError(path, "targets[0] text should be a string", line=line, record=task_id)
            yield Turn(
                conversation_id=conv,
                turn=turn_no,
                question=exchanges[-1][1],
                history=exchanges[:-1],
                answer=answer or None,
                human_rewrite=None,
                split=self.split_by_collection.get(collection),
                turn_id=task_id,
                where=(str(path), line),
            )

    # -- corpus --------------------------------------------------------------------------------------------
    def passages(self) -> Iterator[Passage]:
        seen: dict[str, tuple[str, int]] = {}  # doc id -> (text, line first seen); the gold set is small
        for path, line, obj, task_id, _ in self._tasks():
            contexts = opt_field(obj, "contexts", path, line, list, _TASK_FIELDS, task_id) or []
            for i, c in enumerate(contexts, start=1):
                if not isinstance(c, dict):
                    raise DataError(path, f"contexts[{i}] should be an object", line=line, record=task_id)
                doc_id = as_id(field_of(c, "document_id", path, line), "document_id", path, line)
                text = field_of(c, "text", path, line)
                if doc_id in seen:
                    first_text, first_line = seen[doc_id]
                    if first_text != text:
                        raise DataError(
                            path, f"passage {doc_id!r} has a different text than on line {first_line}",
                            line=line, record=task_id,
                        )  # fmt: skip
                    continue
                seen[doc_id] = (text, line)
                title = opt_field(c, "title", path, line, str, ("document_id", "text", "url"), task_id) or ""
                yield Passage(doc_id=doc_id, text=text.strip(), title=title.strip(), where=(str(path), line))

    # -- qrels ---------------------------------------------------------------------------------------------
    def qrels(self) -> Iterator[Qrel]:
        folder = self.base / _QRELS
        if not folder.is_dir():
            raise DataError(folder, f"missing: an {self.name} dataset needs this folder of BEIR qrels (.tsv)")
        files = sorted(folder.glob("*.tsv"))
        if not files:
            raise DataError(folder, "no qrels files (*.tsv) in this folder")
        excluded: set[str] = set()  # tasks of collections left out by the ``collections`` option
        seen_collections: set[str] = set()
        if self.collections is not None:
            path = self._tasks_path()
            for line, obj in read_jsonl(path):
                collection = str(obj.get("Collection", "")).strip().lower()
                seen_collections.add(collection)
                if collection not in self.collections:
                    excluded.add(str(obj.get("task_id")))
        for path in files:
            stem = path.stem.lower()
            if self.collections is not None and stem in seen_collections and stem not in self.collections:
                continue  # e.g. fiqa.tsv when keeping only clapnq
            for q in read_beir_qrels(path):
                if q.turn_id not in excluded:
                    yield q
