"""TREC CAsT 2019-2022 topics with TREC qrels (layout of the daltonj/treccastweb repository).

Topic files are JSON arrays of ``{number, turn: [...]}``; the turn fields vary by year:

- 2019: ``number``, ``raw_utterance``; manual rewrites in a separate TSV (``<topic>_<turn> <tab> rewrite``).
- 2020: ``number``, ``raw_utterance``, ``manual_rewritten_utterance``, ``automatic_rewritten_utterance``,
  ``canonical_result_id`` (no answer text).
- 2021: as 2020, plus ``passage`` (the canonical response passage; used as the answer) and ``passage_id``.
- 2022: ``number`` (``"<branch>-<n>"``), ``utterance``, ``manual_rewritten_utterance``, ``response``,
  ``provenance``. The "flattened, duplicated" file lists every branch of a topic as its own conversation, repeating
  the shared turns: each turn is read once (a repeated turn must have the same utterance, rewrite and history;
  its response may differ, as the branches split on the system's response: the first is kept as its answer).

Turn ids are TREC's ``<topic>_<turn>`` (``31_4``, ``132_2-3``); a conversation is a topic; ``turn`` is the
position in the (branch of the) conversation. Qrels: ``qid 0|Q0 docid relevance`` (graded). Passage ids point to
MS MARCO / CAR / WaPo / KILT, which are not read here: ``has_corpus`` is False.

Options: ``year`` (2019, 2020, 2021, 2022; default: the only year present), ``training`` (2019 only: the training
topics), and overrides ``topics``, ``qrels``, ``rewrites`` (paths relative to ``root``); ``split`` (default
``"test"``: CAsT is evaluation data; ``None`` leaves it to ingest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from retrieval.datasets._common import as_id, first_existing, given_path, json_records, read_trec_qrels, text_of
from retrieval.datasets.base import DatasetReader, Qrel, Turn, exchange, field_of, read_tsv, register
from core.errors import DataError

# year -> (topics, manual rewrites TSV, qrels); paths relative to the treccastweb root
_LAYOUT: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "2019": (("2019/data/evaluation/evaluation_topics_v1.0.json",),
             ("2019/data/evaluation/evaluation_topics_annotated_resolved_v1.0.tsv",),
             ("2019/data/2019qrels.txt",)),
    "2019-train": (("2019/data/training/train_topics_v1.0.json",),
                   ("2019/data/training/train_topic_sample_annotated_resolved_v1.0.tsv",),
                   ("2019/data/training/train_topics_mod.qrel",)),
    "2020": (("2020/2020_manual_evaluation_topics_v1.0.json",), (),
             ("2020/2020qrels.txt", "2020/2020qrels.qrel")),
    "2021": (("2021/2021_manual_evaluation_topics_v1.0.json",), (),
             ("2021/trec-cast-qrels-docs.2021.qrel",)),
    "2022": (("2022/2022_evaluation_topics_flattened_duplicated_v1.0.json",), (),
             ("2022/cast2022.qrel", "2022/2022-qrels.txt", "2022/qrels.txt")),
}  # fmt: skip


def _candidates(year: str, rels: tuple[str, ...]) -> list[str]:
    """Each path as given, and without its leading ``<year>/`` (for a ``root`` that is the year's folder)."""
    out = list(rels)
    for rel in rels:
        parts = Path(rel).parts
        if parts and parts[0] == year[:4]:
            out.append(str(Path(*parts[1:])))
    return out


@register
class TrecCastReader(DatasetReader):
    name = "trec-cast"
    has_corpus = False

    def __init__(
        self,
        root: str | Path,
        year: int | str | None = None,
        training: bool = False,
        topics: str | None = None,
        qrels: str | None = None,
        rewrites: str | None = None,
        split: str | None = "test",
    ):
        super().__init__(root)
        self.split = split
        if year is None and topics is None:
            present = [y for y, (t, _, _) in _LAYOUT.items() if "train" not in y
                       and first_existing(self.root, _candidates(y, t))]  # fmt: skip
            if len(present) != 1:
                found = f"found topics for {', '.join(present)}" if present else "found no known topics file"
                raise DataError(self.root, f"give the CAsT `year` option (2019, 2020, 2021 or 2022); {found}")
            year = present[0]
        self.year = str(year) if year is not None else None
        key = f"{self.year}-train" if training else self.year
        if key is not None and key not in _LAYOUT and topics is None:
            raise DataError(self.root, f"unknown CAsT year {year!r}{' (training)' if training else ''}; "
                            f"known: {', '.join(sorted(_LAYOUT))}")  # fmt: skip
        layout = _LAYOUT.get(key or "", ((), (), ()))
        y = self.year or ""
        if topics:
            self.topics = given_path(self.root, topics, "topics file")
        else:
            found = first_existing(self.root, _candidates(y, layout[0]))
            if found is None:
                raise DataError(self.root / layout[0][0], f"missing: the CAsT {key} topics file (folder {self.root})")
            self.topics = found
        self.rewrites = (given_path(self.root, rewrites, "rewrites file") if rewrites
                         else first_existing(self.root, _candidates(y, layout[1])))  # fmt: skip
        self.qrels_path = (given_path(self.root, qrels, "qrels file") if qrels
                           else first_existing(self.root, _candidates(y, layout[2])))  # fmt: skip

    def _manual_rewrites(self) -> dict[str, str]:
        if self.rewrites is None:
            return {}
        out: dict[str, str] = {}
        for line, parts in read_tsv(self.rewrites, 2, header=False):
            qid, text = parts[0].strip().lstrip("\ufeff"), parts[1]
            out[qid] = text_of(text, "manual rewrite", self.rewrites, line, qid)
        return out

    def turns(self) -> Iterator[Turn]:
        path = self.topics
        rewrites = self._manual_rewrites()
        seen: dict[str, tuple[int, tuple[Any, ...]]] = {}  # turn id -> (line, content), for 2022's repeated turns
        for line, topic in json_records(path):
            conv = as_id(field_of(topic, "number", path, line, object), "topic number", path, line)
            turns = field_of(topic, "turn", path, line, list) if "turn" in topic or "turns" not in topic \
                else field_of(topic, "turns", path, line, list)  # fmt: skip
            history: list[tuple[str, str]] = []
            for position, t in enumerate(turns, start=1):
                if not isinstance(t, dict):
                    raise DataError(path, f"topic {conv}: turn {position} should be an object", line=line,
                                    record=conv)  # fmt: skip
                number = as_id(field_of(t, "number", path, line, object), "turn number", path, line)
                turn_id = f"{conv}_{number}"
                key = "raw_utterance" if "raw_utterance" in t or "utterance" not in t else "utterance"
                question = text_of(field_of(t, key, path, line), "utterance", path, line, turn_id)
                answer = t.get("passage") if "passage" in t else t.get("response")
                if answer is not None and not isinstance(answer, str):
                    raise DataError(path, "the response/passage should be a string", line=line, record=turn_id)
                manual = t.get("manual_rewritten_utterance", rewrites.get(turn_id))
                if manual is not None and not isinstance(manual, str):
                    raise DataError(path, "manual_rewritten_utterance should be a string", line=line, record=turn_id)
                # 2022 branches on the system's response: a repeated turn has the same utterance, rewrite and
                # history, but its response may differ per branch (the first one is kept as the turn's answer;
                # each branch's own response goes into the history of its later turns).
                content = (question, manual, tuple(history))
                if turn_id in seen:
                    first_line, first_content = seen[turn_id]
                    if first_content != content:
                        raise DataError(path, f"turn {turn_id} repeats (first on line {first_line}) with a different "
                                        "utterance, rewrite or history", line=line, record=turn_id)  # fmt: skip
                else:
                    seen[turn_id] = (line, content)
                    yield Turn(
                        conversation_id=conv,
                        turn=position,
                        question=question,
                        history=list(history),
                        answer=answer or None,
                        human_rewrite=manual or None,
                        split=self.split,
                        turn_id=turn_id,
                        where=(str(path), line),
                    )
                history.extend(exchange(question, answer))

    def automatic_rewrites(self) -> dict[str, str]:
        """The organisers' automatic rewrites (2020-2021 ``automatic_rewritten_utterance``: their T5 rewriter's
        output, given with the topics), by turn id; empty for years without them."""
        out = {}
        for line, topic in json_records(self.topics):
            conv = as_id(field_of(topic, "number", self.topics, line, object), "topic number", self.topics, line)
            for t in topic.get("turn") or []:
                text = t.get("automatic_rewritten_utterance") if isinstance(t, dict) else None
                if isinstance(text, str) and text.strip() and "number" in t:
                    out[f"{conv}_{as_id(t['number'], 'turn number', self.topics, line)}"] = " ".join(text.split())
        return out

    def qrels(self) -> Iterator[Qrel]:
        if self.qrels_path is None:
            return iter(())
        return read_trec_qrels(self.qrels_path)
