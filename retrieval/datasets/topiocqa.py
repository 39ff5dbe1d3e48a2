"""TopiOCQA (McGill-NLP): open-domain conversational QA over Wikipedia, with topic switches.

Turn files (one per split, a JSON array; both public shapes are read, recognised per record):

- DPR retriever format (``data/retriever/all_history/{train,dev}.json`` in the Zenodo/S3 release):
  ``conv_id``, ``turn_id``, ``question`` = the whole conversation joined by ``" [SEP] "``, oldest first, the
  current question LAST (``q1 [SEP] a1 [SEP] q2 [SEP] a2 [SEP] q3``), ``answers`` (list) and ``positive_ctxs``
  (``[{passage_id, title, text}]``, the gold passage; -> qrels with relevance 1).
- Dataset format (``data/topiocqa_dataset/{split}.json``, or ``topiocqa_{split}.json`` of the early release):
  ``Conversation_no``, ``Turn_no``, ``Question``, ``Answer``, ``Context`` (the earlier questions and answers,
  alternating, oldest first), ``Topic``, ``Topic_section``, optional ``Rewrite``. No qrels.

Collection: ``full_wiki_segments.tsv`` (``id <tab> text <tab> title`` with a header line; the title is
``"<page> [SEP] <section>"`` and becomes ``"<page>, <section>"``), streamed line by line. Without it the reader
has no corpus (``has_corpus`` is False and ``passages()`` yields nothing).

Ids: train and dev both number their conversations from 1, so a conversation id is ``<split>-<conv_id>`` and a
turn id ``<split>-<conv_id>_<turn_id>`` (``dev-1_6``); ``split_prefix=False`` keeps the dataset's own numbers.

Options: ``files`` (split -> turns file, relative to ``root``; default: for train and dev, the first of the
public names above that exists), ``collection`` (the TSV; default ``data/wikipedia_split/full_wiki_segments.tsv``
or ``full_wiki_segments.tsv`` when present), ``rewrites`` (split -> a JSON array of gold rewrites: records
with ``conv_id``/``turn_id`` or ``Conversation_no``/``Turn_no`` and the rewrite in ``Rewrite``, ``rewrite`` or,
for a DPR-format rewrites file, ``question``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterator

from retrieval.datasets._common import as_id, first_existing, given_path, json_records, opt_field, text_of
from retrieval.datasets.base import DatasetReader, Passage, Qrel, Turn, field_of, read_lines, register
from core.errors import DataError

SEP = "[SEP]"
_SPLITS = ("train", "dev")
_TURN_FILES = (
    "data/retriever/all_history/{split}.json",
    "retriever/all_history/{split}.json",
    "all_history/{split}.json",
    "topiocqa_all_history_retriever_{split}.json",
    "data/topiocqa_dataset/{split}.json",
    "topiocqa_dataset/{split}.json",
    "topiocqa_{split}.json",
)
_COLLECTIONS = ("data/wikipedia_split/full_wiki_segments.tsv", "wikipedia_split/full_wiki_segments.tsv",
                "full_wiki_segments.tsv")  # fmt: skip
_DPR_FIELDS = ("conv_id", "turn_id", "question", "answers", "positive_ctxs", "negative_ctxs",
               "hard_negative_ctxs", "dataset")  # fmt: skip
_RAW_FIELDS = ("Conversation_no", "Turn_no", "Question", "Answer", "Context", "Topic", "Topic_section",
               "Rationale", "is_nq", "Rewrite", "Additional_answers")  # fmt: skip


def _title(raw: str) -> str:
    return ", ".join(part.strip() for part in raw.split(SEP) if part.strip())


@register
class TopiocqaReader(DatasetReader):
    name = "topiocqa"

    def __init__(
        self,
        root: str | Path,
        files: dict[str, str] | None = None,
        collection: str | None = None,
        rewrites: dict[str, str] | None = None,
        split_prefix: bool = True,
    ):
        super().__init__(root)
        if files:
            self.files = {split: given_path(self.root, rel, f"{split} turns file") for split, rel in files.items()}
        else:
            self.files = {}
            for split in _SPLITS:
                found = first_existing(self.root, (c.format(split=split) for c in _TURN_FILES))
                if found is not None:
                    self.files[split] = found
            if not self.files:
                names = ", ".join(c.format(split="{train,dev}") for c in _TURN_FILES)
                raise DataError(self.root, f"no TopiOCQA turns file found; looked for {names} (or give `files`)")
        if collection:
            self.collection: Path | None = given_path(self.root, collection, "collection TSV")
        else:
            self.collection = first_existing(self.root, _COLLECTIONS)
        self.has_corpus = self.collection is not None  # type: ignore[misc]  (per instance: depends on the files)
        self.split_prefix = split_prefix
        self.rewrites = {s: given_path(self.root, rel, f"{s} rewrites file") for s, rel in (rewrites or {}).items()}

    # -- turns ---------------------------------------------------------------------------------------------
    def _records(self, path: Path) -> Iterator[tuple[int, dict[str, Any], bool]]:
        """(line, record, is_dpr) of one turns file."""
        for line, obj in json_records(path):
            if "conv_id" in obj or "positive_ctxs" in obj:
                yield line, obj, True
            elif "Conversation_no" in obj or "Question" in obj:
                yield line, obj, False
            else:
                raise DataError(
                    path, "unrecognised record: expected the DPR retriever fields (conv_id, turn_id, question, "
                    f"positive_ctxs) or the dataset fields (Conversation_no, Turn_no, Question, Context); "
                    f"fields present: {sorted(obj)}", line=line,
                )  # fmt: skip

    def _ids(self, obj: dict[str, Any], dpr: bool, path: Path, line: int) -> tuple[str, int]:
        conv_key, turn_key = ("conv_id", "turn_id") if dpr else ("Conversation_no", "Turn_no")
        conv = as_id(field_of(obj, conv_key, path, line, object), conv_key, path, line)
        turn = field_of(obj, turn_key, path, line, int)
        return conv, turn

    def _conv(self, split: str, conv: str) -> str:
        """Train and dev both number their conversations from 1: the split keeps the ids apart."""
        return f"{split}-{conv}" if self.split_prefix else conv

    def _load_rewrites(self, split: str) -> dict[tuple[str, int], str]:
        path = self.rewrites.get(split)
        if path is None:
            return {}
        out: dict[tuple[str, int], str] = {}
        for line, obj in json_records(path):
            dpr = "conv_id" in obj
            conv, turn = self._ids(obj, dpr, path, line)
            for key in ("Rewrite", "rewrite", "question"):
                if key in obj:
                    out[(conv, turn)] = text_of(obj[key], "rewrite", path, line, f"{conv}_{turn}")
                    break
            else:
                raise DataError(path, f"no rewrite field (Rewrite, rewrite or question); fields: {sorted(obj)}",
                                line=line)  # fmt: skip
        return out

    def turns(self) -> Iterator[Turn]:
        for split, path in self.files.items():
            rewrites = self._load_rewrites(split)
            for line, obj, dpr in self._records(path):
                raw_conv, turn = self._ids(obj, dpr, path, line)
                conv = self._conv(split, raw_conv)
                record = f"{conv}_{turn}"
                if dpr:
                    joined = text_of(field_of(obj, "question", path, line), "question", path, line, record)
                    parts = [p.strip() for p in joined.split(SEP)]
                    question, earlier = parts[-1], parts[:-1]
                    if len(earlier) % 2:
                        raise DataError(
                            path, f"question has {len(parts)} '[SEP]'-separated parts; expected an odd number "
                            "(earlier question/answer pairs, then the current question)", line=line, record=record,
                        )  # fmt: skip
                    answers = opt_field(obj, "answers", path, line, list, _DPR_FIELDS, record) or []
                    answer = answers[0] if answers and isinstance(answers[0], str) else None
                    human_rewrite = None
                else:
                    question = field_of(obj, "Question", path, line)
                    earlier = field_of(obj, "Context", path, line, list)
                    if not all(isinstance(text, str) for text in earlier):
                        raise DataError(path, "Context entries should be strings", line=line, record=record)
                    if len(earlier) % 2:
                        raise DataError(path, f"Context has {len(earlier)} entries; expected question/answer pairs",
                                        line=line, record=record)  # fmt: skip
                    answer = opt_field(obj, "Answer", path, line, str, _RAW_FIELDS, record)
                    human_rewrite = opt_field(obj, "Rewrite", path, line, str, _RAW_FIELDS, record)
                text_of(question, "question", path, line, record)
                history = [("user" if i % 2 == 0 else "agent", text) for i, text in enumerate(earlier)]
                yield Turn(
                    conversation_id=conv,
                    turn=turn,
                    question=question,
                    history=history,
                    answer=answer or None,
                    human_rewrite=rewrites.get((raw_conv, turn), human_rewrite),
                    split=split,
                    where=(str(path), line),
                )

    # -- qrels ---------------------------------------------------------------------------------------------
    def qrels(self) -> Iterator[Qrel]:
        for split, path in self.files.items():
            for line, obj, dpr in self._records(path):
                if not dpr:
                    continue
                raw_conv, turn = self._ids(obj, dpr, path, line)
                conv = self._conv(split, raw_conv)
                positives = field_of(obj, "positive_ctxs", path, line, list)
                for i, ctx in enumerate(positives, start=1):
                    if not isinstance(ctx, dict):
                        raise DataError(path, f"positive_ctxs[{i}] should be an object", line=line,
                                        record=f"{conv}_{turn}")  # fmt: skip
                    key = "passage_id" if "passage_id" in ctx or "psg_id" not in ctx else "psg_id"
                    doc_id = as_id(field_of(ctx, key, path, line, object), key, path, line)
                    yield Qrel(f"{conv}_{turn}", doc_id, 1, where=(str(path), line))

    # -- corpus --------------------------------------------------------------------------------------------
    def passages(self) -> Iterator[Passage]:
        if self.collection is None:
            return
        path = self.collection
        for lineno, line in read_lines(path):
            parts = next(csv.reader([line], delimiter="\t")) if '"' in line else line.split("\t")
            if lineno == 1 and parts and parts[0].strip().lower() == "id":
                continue  # header: id, text, title
            if len(parts) != 3:
                raise DataError(path, f"expected 3 tab-separated fields (id, text, title), found {len(parts)}",
                                line=lineno)  # fmt: skip
            doc_id, text, title = parts
            if not doc_id.strip():
                raise DataError(path, "empty passage id", line=lineno)
            yield Passage(doc_id=doc_id.strip(), text=text, title=_title(title), where=(str(path), lineno))

