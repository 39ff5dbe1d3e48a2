"""CANARD (Elgohary et al., EMNLP 2019): human question-in-context rewrites of QuAC dialogs. No passages.

Files ``train.json``, ``dev.json``, ``test.json`` (split from the file; those present are read), each a JSON array of
``{History, QuAC_dialog_id, Question_no, Question, Rewrite}``. ``History`` starts with the Wikipedia article title
and the section title, then the earlier questions and answers, alternating, oldest first.

A turn's answer is not in its own record: it is the last History entry of the dialog's next question, and is
taken from there (the last question of a dialog has none). The title and section are not a user or agent
utterance and are left out of the history unless ``topic_in_history`` is set, which adds them as a first
``("user", "<title>: <section>")`` entry.

Options: ``files`` (split -> file, relative to ``root``), ``topic_in_history`` (default False).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from retrieval.datasets._common import as_id, given_path, json_records, opt_field, text_of
from retrieval.datasets.base import DatasetReader, Turn, field_of, register
from core.errors import DataError

_FILES = {"train": "train.json", "dev": "dev.json", "test": "test.json"}
_FIELDS = ("History", "QuAC_dialog_id", "Question_no", "Question", "Rewrite")


@register
class CanardReader(DatasetReader):
    name = "canard"
    has_corpus = False

    def __init__(self, root: str | Path, files: dict[str, str] | None = None, topic_in_history: bool = False):
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

    def turns(self) -> Iterator[Turn]:
        for split, path in self.files.items():
            records: list[tuple[int, dict[str, Any], str, int, list[str]]] = []
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
