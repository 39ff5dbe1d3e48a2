"""The project's own format, used by the embedded demo (see data/README.md).

A folder with ``conversations.jsonl`` (one conversation per line: ``conversation_id`` and ``turns``, each turn
``question``, optional ``answer`` and ``rewrite``), ``passages.jsonl`` (``id``, optional ``title``, ``text``) and
``qrels.tsv`` (``turn_id``, ``doc_id``, ``relevance``; turn ids are ``<conversation_id>_<turn number>``).

A folder that grows (continuous distillation, flows/continuous.py) adds files beside these:
``conversations-<name>.jsonl`` and ``qrels-<name>.tsv`` are read after ``conversations.jsonl`` and ``qrels.tsv``,
in name order (e.g. ``conversations-2026-12-07.jsonl``).
"""

from __future__ import annotations

from typing import Iterator

from retrieval.datasets.base import (DatasetReader, Passage, Qrel, Turn, exchange, field_of, read_jsonl, read_tsv,
                                 register)
from core.errors import DataError


@register
class NativeReader(DatasetReader):
    name = "disco"

    def turns(self) -> Iterator[Turn]:
        for path in [self.require("conversations.jsonl"), *sorted(self.root.glob("conversations-*.jsonl"))]:
            yield from self._turns(path)

    def _turns(self, path) -> Iterator[Turn]:
        for line, obj in read_jsonl(path):
            cid = field_of(obj, "conversation_id", path, line)
            turns = field_of(obj, "turns", path, line, list)
            history: list[tuple[str, str]] = []
            for i, t in enumerate(turns, start=1):
                if not isinstance(t, dict):
                    raise DataError(path, f"turn {i} should be an object", line=line, record=cid)
                question = field_of(t, "question", path, line)
                answer = t.get("answer")
                yield Turn(
                    conversation_id=cid,
                    turn=i,
                    question=question,
                    history=list(history),
                    answer=answer,
                    human_rewrite=t.get("rewrite"),
                    split=obj.get("split"),
                    where=(str(path), line),
                )
                history.extend(exchange(question, answer))

    def passages(self) -> Iterator[Passage]:
        path = self.require("passages.jsonl")
        for line, obj in read_jsonl(path):
            yield Passage(
                doc_id=str(field_of(obj, "id", path, line)),
                title=obj.get("title") or "",
                text=field_of(obj, "text", path, line),
                where=(str(path), line),
            )

    def qrels(self) -> Iterator[Qrel]:
        for path in [self.require("qrels.tsv"), *sorted(self.root.glob("qrels-*.tsv"))]:
            yield from self._qrels(path)

    def _qrels(self, path) -> Iterator[Qrel]:
        for line, (turn_id, doc_id, rel) in read_tsv(path, 3):
            try:
                relevance = int(rel)
            except ValueError:
                raise DataError(path, f"relevance {rel!r} is not an integer", line=line) from None
            yield Qrel(turn_id, doc_id, relevance, where=(str(path), line))
