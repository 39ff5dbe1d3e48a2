"""TREC iKAT 2023 / 2024 topics (layout of the irlabamsterdam/iKAT repository).

Topic files are JSON arrays of ``{number, title, ptkb: {"1": statement, ...}, turns: [...]}`` with turns
``{turn_id, utterance, resolved_utterance, response, ptkb_provenance, response_provenance}``. ``utterance`` is the
question, ``resolved_utterance`` the human rewrite, ``response`` the answer; ``response_provenance`` lists the
passages (``<clueweb doc id>:<passage number>``) the response was written from. Turn ids are ``<number>_<turn_id>``
(``9-1_3``), as in the TREC qrels. The personal statements (PTKB) come (conversation id ->
statements) from ``reader.ptkb()``, not in the turns.

Qrels: a TREC qrels file (``qid Q0 docid relevance``, graded) when given with ``qrels``; otherwise the response
provenance, relevance 1 (``provenance_qrels=False`` turns that off).

Passages: ``*_topics_psg_text.jsonl`` files (``{doc_id, passage_id, passage_text}`` -> ``<doc_id>:<passage_id>``;
the provenance passages of the topics) or a collection JSONL ``{id, contents}``, streamed; by default the
``psg_text`` files of the year that are present. Without any, ``has_corpus`` is False.

Options: ``year`` (2023 or 2024; default: the only one present), ``topics`` (split -> file, overriding the public
names: 2023 ``{"train": 2023_train_topics.json, "test": 2023_test_topics.json}``, 2024 ``{"test": ...}``),
``qrels``, ``provenance_qrels``, ``passages`` (list of JSONL files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from retrieval.datasets._common import (
    as_id, first_existing, given_path, json_records, opt_field, read_trec_qrels, text_of,
)  # fmt: skip
from retrieval.datasets.base import DatasetReader, Passage, Qrel, Turn, exchange, field_of, read_jsonl, register
from core.errors import DataError

_TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "2023": {
        "train": ("2023/data/2023_train_topics.json", "data/2023_train_topics.json", "2023_train_topics.json"),
        "test": ("2023/data/2023_test_topics.json", "data/2023_test_topics.json", "2023_test_topics.json"),
    },
    "2024": {"test": ("2024/data/2024_test_topics.json", "data/2024_test_topics.json", "2024_test_topics.json")},
}
_PASSAGES: dict[str, tuple[str, ...]] = {
    "2023": ("2023/data/2023_train_topics_psg_text.jsonl", "data/2023_train_topics_psg_text.jsonl",
             "2023_train_topics_psg_text.jsonl", "2023/data/2023_test_topics_psg_text.jsonl",
             "data/2023_test_topics_psg_text.jsonl", "2023_test_topics_psg_text.jsonl"),
    "2024": ("2024/data/2024_test_topics_psg_text.jsonl", "data/2024_test_topics_psg_text.jsonl",
             "2024_test_topics_psg_text.jsonl"),
}  # fmt: skip
_TURN_FIELDS = ("turn_id", "utterance", "resolved_utterance", "response", "ptkb_provenance", "response_provenance",
                "citations", "number")  # fmt: skip


@register
class TrecIkatReader(DatasetReader):
    name = "trec-ikat"

    def __init__(
        self,
        root: str | Path,
        year: int | str | None = None,
        topics: dict[str, str] | None = None,
        qrels: str | None = None,
        provenance_qrels: bool = True,
        passages: list[str] | None = None,
    ):
        super().__init__(root)
        if topics:
            self.topics = {split: given_path(self.root, rel, f"{split} topics file") for split, rel in topics.items()}
            self.year = str(year) if year is not None else None
        else:
            years = [str(year)] if year is not None else list(_TOPICS)
            for y in years:
                if y not in _TOPICS:
                    raise DataError(self.root, f"unknown iKAT year {y!r}; known: {', '.join(_TOPICS)}")
            found = {y: {s: p for s, names in _TOPICS[y].items() if (p := first_existing(self.root, names))}
                     for y in years}  # fmt: skip
            present = [y for y in years if found[y]]
            if len(present) != 1:
                what = f"topics for {', '.join(present)}" if present else "no known topics file"
                raise DataError(self.root, f"found {what}; give `year` (2023 or 2024) or `topics`")
            self.year = present[0]
            self.topics = found[self.year]
        self.qrels_path = given_path(self.root, qrels, "qrels file") if qrels else None
        self.provenance_qrels = provenance_qrels
        if passages:
            self.passage_files = [given_path(self.root, rel, "passages file") for rel in passages]
        else:
            defaults = _PASSAGES.get(self.year or "", ())
            self.passage_files = [self.root / rel for rel in defaults if (self.root / rel).exists()]
        self.has_corpus = bool(self.passage_files)  # type: ignore[misc]  (per instance: depends on the files)

    def ptkb(self) -> dict[str, list[str]]:
        """Conversation id -> the user's personal statements (PTKB), in their numbered order."""
        out: dict[str, list[str]] = {}
        for _split, path, line, topic, conv in self._topics():
            ptkb = opt_field(topic, "ptkb", path, line, (dict, list), ("number", "title", "turns"), conv) or {}
            statements = list(ptkb.values()) if isinstance(ptkb, dict) else list(ptkb)
            out[conv] = [s for s in statements if isinstance(s, str)]
        return out

    def _topics(self) -> Iterator[tuple[str, Path, int, dict[str, Any], str]]:
        for split, path in self.topics.items():
            for line, topic in json_records(path):
                conv = as_id(field_of(topic, "number", path, line, object), "topic number", path, line)
                yield split, path, line, topic, conv

    def _turns_of(self, topic: dict[str, Any], path: Path, line: int, conv: str) -> Iterator[tuple[dict, str, int]]:
        for position, t in enumerate(field_of(topic, "turns", path, line, list), start=1):
            if not isinstance(t, dict):
                raise DataError(path, f"turn {position} should be an object", line=line, record=conv)
            number = as_id(field_of(t, "turn_id", path, line, object), "turn_id", path, line)
            yield t, f"{conv}_{number}", position

    def turns(self) -> Iterator[Turn]:
        for split, path, line, topic, conv in self._topics():
            history: list[tuple[str, str]] = []
            for t, turn_id, position in self._turns_of(topic, path, line, conv):
                question = text_of(field_of(t, "utterance", path, line), "utterance", path, line, turn_id)
                rewrite = opt_field(t, "resolved_utterance", path, line, str, _TURN_FIELDS, turn_id)
                answer = opt_field(t, "response", path, line, str, _TURN_FIELDS, turn_id)
                yield Turn(
                    conversation_id=conv,
                    turn=position,
                    question=question,
                    history=list(history),
                    answer=answer or None,
                    human_rewrite=rewrite or None,
                    split=split,
                    turn_id=turn_id,
                    where=(str(path), line),
                )
                history.extend(exchange(question, answer))

    def qrels(self) -> Iterator[Qrel]:
        if self.qrels_path is not None:
            yield from read_trec_qrels(self.qrels_path)
            return
        if not self.provenance_qrels:
            return
        for _split, path, line, topic, conv in self._topics():
            for t, turn_id, _ in self._turns_of(topic, path, line, conv):
                provenance = opt_field(t, "response_provenance", path, line, list, _TURN_FIELDS, turn_id) or []
                for doc_id in dict.fromkeys(provenance):  # a passage cited twice is one qrel
                    yield Qrel(turn_id, as_id(doc_id, "response_provenance entry", path, line), 1,
                               where=(str(path), line))  # fmt: skip

    def passages(self) -> Iterator[Passage]:
        provenance_seen: dict[str, str] = {}  # the psg_text files are small and may overlap (train and test)
        for path in self.passage_files:
            for line, obj in read_jsonl(path):
                if "passage_text" in obj or "passage_id" in obj:
                    doc = as_id(field_of(obj, "doc_id", path, line, object), "doc_id", path, line)
                    pid = as_id(field_of(obj, "passage_id", path, line, object), "passage_id", path, line)
                    doc_id, text = f"{doc}:{pid}", field_of(obj, "passage_text", path, line)
                    if doc_id in provenance_seen:
                        if provenance_seen[doc_id] != text:
                            raise DataError(path, f"passage {doc_id!r} appears again with a different text", line=line)
                        continue
                    provenance_seen[doc_id] = text
                    yield Passage(doc_id, text.strip(), where=(str(path), line))
                else:
                    doc_id = as_id(field_of(obj, "id", path, line, object), "id", path, line)
                    yield Passage(doc_id, field_of(obj, "contents", path, line), where=(str(path), line))
