"""QReCC (Apple; SCAI-QReCC-21 release): conversational QA over web pages, with human rewrites.

Turn files: ``qrecc_train.json`` and ``qrecc_test.json`` (split from the file), each a JSON array of
``{Conversation_no, Turn_no, Context, Question, Truth_rewrite, Truth_passages, Answer}`` where ``Context`` is the
earlier questions and answers, alternating, oldest first, and ``Truth_passages`` the relevant passage ids
(-> qrels with relevance 1; many turns have none). The original ml-qrecc names ``Rewrite`` and the SCAI
``Truth_answer`` are read too when the ``Truth_rewrite`` / ``Answer`` fields are absent.

Collection: JSONL ``{id, contents}`` streamed line by line: one file, or a folder read recursively
(``collection-paragraph/{commoncrawl,wayback,wayback-backfill}/*.jsonl`` from ``passages.zip``). Without it the
reader has no corpus (``has_corpus`` False).

Ids: a conversation id is ``<split>-<Conversation_no>`` and a turn id ``<split>-<Conversation_no>_<Turn_no>``
(``test-3_2``), so that the train and test files never share an id; ``split_prefix=False`` keeps the dataset's own.

Options: ``files`` (split -> file; default ``{"train": "qrecc_train.json", "test": "qrecc_test.json"}``, the
ones present, also looked for under ``qrecc_data/``), ``collection`` (file or folder; default the first present of
``collection-paragraph``, ``passages``, ``collection.jsonl``, ``passages.jsonl``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from retrieval.datasets._common import as_id, first_existing, given_path, json_records, opt_field, text_of
from retrieval.datasets.base import DatasetReader, Passage, Qrel, Turn, field_of, read_jsonl, register
from core.errors import DataError

_FILES = {"train": ("qrecc_train.json", "qrecc_data/qrecc_train.json", "train.json"),
          "test": ("qrecc_test.json", "qrecc_data/qrecc_test.json", "test.json")}  # fmt: skip
_COLLECTIONS = ("collection-paragraph", "passages", "collection.jsonl", "passages.jsonl")
_FIELDS = ("Conversation_no", "Turn_no", "Context", "Question", "Truth_rewrite", "Truth_passages", "Answer",
           "Rewrite", "Truth_answer", "Answer_URL", "Conversation_source", "Truth_passage_contents")  # fmt: skip


@register
class QreccReader(DatasetReader):
    name = "qrecc"

    def __init__(
        self,
        root: str | Path,
        files: dict[str, str] | None = None,
        collection: str | None = None,
        split_prefix: bool = True,
    ):
        super().__init__(root)
        self.split_prefix = split_prefix
        if files:
            self.files = {split: given_path(self.root, rel, f"{split} turns file") for split, rel in files.items()}
        else:
            self.files = {}
            for split, names in _FILES.items():
                found = first_existing(self.root, names)
                if found is not None:
                    self.files[split] = found
            if not self.files:
                raise DataError(self.root, "no QReCC turns file found; looked for qrecc_train.json and "
                                "qrecc_test.json (or give `files`)")  # fmt: skip
        if collection:
            self.collection: Path | None = given_path(self.root, collection, "collection")
        else:
            self.collection = first_existing(self.root, _COLLECTIONS)
        self.has_corpus = self.collection is not None  # type: ignore[misc]  (per instance: depends on the files)

    def _records(self) -> Iterator[tuple[str, Path, int, dict[str, Any], str, int]]:
        for split, path in self.files.items():
            for line, obj in json_records(path):
                conv = as_id(field_of(obj, "Conversation_no", path, line, object), "Conversation_no", path, line)
                if self.split_prefix:
                    conv = f"{split}-{conv}"
                turn = field_of(obj, "Turn_no", path, line, int)
                yield split, path, line, obj, conv, turn

    def turns(self) -> Iterator[Turn]:
        for split, path, line, obj, conv, turn in self._records():
            record = f"{conv}_{turn}"
            question = text_of(field_of(obj, "Question", path, line), "question", path, line, record)
            context = field_of(obj, "Context", path, line, list)
            for i, text in enumerate(context, start=1):
                if not isinstance(text, str):
                    raise DataError(path, f"Context entry {i} should be a string", line=line, record=record)
            if len(context) % 2:
                raise DataError(path, f"Context has {len(context)} entries; expected question/answer pairs",
                                line=line, record=record)  # fmt: skip
            rewrite = opt_field(obj, "Truth_rewrite", path, line, str, _FIELDS, record)
            if rewrite is None:
                rewrite = opt_field(obj, "Rewrite", path, line, str, _FIELDS, record)
            answer = opt_field(obj, "Answer", path, line, str, _FIELDS, record)
            if answer is None:
                answer = opt_field(obj, "Truth_answer", path, line, str, _FIELDS, record)
            yield Turn(
                conversation_id=conv,
                turn=turn,
                question=question,
                history=[("user" if i % 2 == 0 else "agent", text) for i, text in enumerate(context)],
                answer=answer or None,
                human_rewrite=rewrite or None,
                split=split,
                where=(str(path), line),
            )

    def qrels(self) -> Iterator[Qrel]:
        for _split, path, line, obj, conv, turn in self._records():
            passages = opt_field(obj, "Truth_passages", path, line, list, _FIELDS, f"{conv}_{turn}") or []
            for doc_id in passages:
                yield Qrel(f"{conv}_{turn}", as_id(doc_id, "Truth_passages entry", path, line), 1,
                           where=(str(path), line))  # fmt: skip

    def passages(self) -> Iterator[Passage]:
        if self.collection is None:
            return
        files = sorted(self.collection.rglob("*.jsonl")) if self.collection.is_dir() else [self.collection]
        if not files:
            raise DataError(self.collection, "no collection files (*.jsonl) in this folder")
        for path in files:
            for line, obj in read_jsonl(path):
                doc_id = as_id(field_of(obj, "id", path, line, object), "id", path, line)
                yield Passage(doc_id=doc_id, text=field_of(obj, "contents", path, line), where=(str(path), line))
