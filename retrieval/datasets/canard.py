"""CANARD (Elgohary et al., EMNLP 2019): human question-in-context rewrites of QuAC dialogs.

Files ``train.json``, ``dev.json``, ``test.json`` (split from the file; those present are read), each a JSON array of
``{History, QuAC_dialog_id, Question_no, Question, Rewrite}``. ``History`` starts with the Wikipedia article title
and the section title, then the earlier questions and answers, alternating, oldest first.

A turn's answer is not in its own record: it is the last History entry of the dialog's next question, and is
taken from there (the last question of a dialog has none). The title and section are not a user or agent
utterance and are left out of the history unless ``topic_in_history`` is set, which adds them as a first
``("user", "<title>: <section>")`` entry.

CANARD ships no passages. With ``answer_passages`` the reader builds a small training corpus from the dialogs
themselves, as OR-QuAC (Qu et al., SIGIR 2020) does from the QuAC sections: each answered question's answer span,
titled ``"<article>: <section>"``, is a passage (id = the turn id) and that turn's positive (relevance 1); the other
answers of the same dialog are same-topic negatives. The spans are short (median 13 words), so this corpus is a
training signal for a student that must learn to resolve the conversation (the human rewrite as its teacher),
not a benchmark to report retrieval figures on.

Options: ``files`` (split -> file, relative to ``root``), ``topic_in_history`` (default False),
``answer_passages`` (default False).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from retrieval.datasets._common import as_id, given_path, json_records, opt_field, text_of
from retrieval.datasets.base import DatasetReader, Passage, Qrel, Turn, field_of, register
from core.errors import DataError

_FILES = {"train": "train.json", "dev": "dev.json", "test": "test.json"}
_FIELDS = ("History", "QuAC_dialog_id", "Question_no", "Question", "Rewrite")
_Record = tuple[int, dict[str, Any], str, int, list[str]]  # line, object, dialog id, question number, History


@register
class CanardReader(DatasetReader):
    name = "canard"
    has_corpus = False

    def __init__(self, root: str | Path, files: dict[str, str] | None = None, topic_in_history: bool = False,
                 answer_passages: bool = False):
        super().__init__(root)
        if files:
            self.files = {split: given_path(self.root, rel, f"{split} file") for split, rel in files.items()}
        else:
            base = self.root / "data" / "release" if (self.root / "data" / "release").is_dir() else self.root
            self.files = {split: base / name for split, name in _FILES.items() if (base / name).exists()}
            if not self.files:
                raise DataError(self.root, "no CANARD file found; looked for train.json, dev.json, test.json "
                                "(or give `files`)")  # fmt: skip
        self.topic_in_history = topic_in_history
        self.answer_passages = answer_passages
        self.has_corpus = answer_passages  # type: ignore[misc]  (per instance: depends on the option)

    def _records(self) -> Iterator[tuple[str, Path, list[_Record], dict[tuple[str, int], str]]]:
        """Per file: its split, path, checked records and the answers (dialog, question number) -> answer span."""
        for split, path in self.files.items():
            records: list[_Record] = []
            for line, obj in json_records(path):
                dialog = as_id(field_of(obj, "QuAC_dialog_id", path, line, object), "QuAC_dialog_id", path, line)
                number = field_of(obj, "Question_no", path, line, int)
                record = f"{dialog}_{number}"
                history = field_of(obj, "History", path, line, list)
                for i, text in enumerate(history, start=1):
                    if not isinstance(text, str):
                        raise DataError(path, f"History entry {i} should be a string", line=line, record=record)
                if len(history) < 2 or len(history) % 2:
                    raise DataError(
                        path, f"History has {len(history)} entries; expected the title, the section, then "
                        "question/answer pairs", line=line, record=record,
                    )  # fmt: skip
                records.append((line, obj, dialog, number, history))
            # the answer to question n is the last History entry of question n + 1 of the same dialog
            answers = {(d, n - 1): h[-1] for _, _, d, n, h in records if len(h) > 2}
            yield split, path, records, answers

    def turns(self) -> Iterator[Turn]:
        for split, path, records, answers in self._records():
            for line, obj, dialog, number, history in records:
                record = f"{dialog}_{number}"
                question = text_of(field_of(obj, "Question", path, line), "question", path, line, record)
                rewrite = opt_field(obj, "Rewrite", path, line, str, _FIELDS, record)
                exchanges = [("user" if i % 2 == 0 else "agent", text) for i, text in enumerate(history[2:])]
                if self.topic_in_history:
                    exchanges.insert(0, ("user", f"{history[0]}: {history[1]}"))
                yield Turn(
                    conversation_id=dialog,
                    turn=number,
                    question=question,
                    history=exchanges,
                    answer=answers.get((dialog, number)),
                    human_rewrite=rewrite or None,
                    split=split,
                    where=(str(path), line),
                )

    # -- the answer-span corpus (``answer_passages``) ------------------------------------------------------
    def _answered(self) -> Iterator[tuple[Path, int, str, str, str]]:
        """(path, line, turn id, title, answer span) for each question with a usable answer."""
        if not self.answer_passages:
            return
        for _, path, records, answers in self._records():
            for line, _, dialog, number, history in records:
                span = answers.get((dialog, number), "").strip()
                if span and span != "CANNOTANSWER":
                    yield path, line, f"{dialog}_{number}", f"{history[0].strip()}: {history[1].strip()}", span

    def passages(self) -> Iterator[Passage]:
        for path, line, turn_id, title, span in self._answered():
            yield Passage(doc_id=turn_id, text=span, title=title, where=(str(path), line))

    def qrels(self) -> Iterator[Qrel]:
        for path, line, turn_id, _, _ in self._answered():
            yield Qrel(turn_id, turn_id, 1, where=(str(path), line))
