"""A trained DiSCo student as a self-describing folder: weights, tokenizer and how to query it.

The distill stage writes ``student/`` (``from_pretrained``-loadable safetensors + tokenizer) and beside the
weights ``disco_student.json``: the input format the student was trained on (:class:`StudentInput`), its query
length, the quantisation scale of the index it searches, its base model and teacher. Everything that queries a
student (the evaluate stage, the search API, exports) reads these settings from the folder instead of a config,
so a student is always queried exactly as it was trained (Lupart et al., SIGIR 2025, arXiv 2410.14609).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from core.io import write_json
from models.conversation import StudentInput, format_conversation

CARD = "disco_student.json"


class StudentCard(BaseModel):
    """How to query a trained student; saved as ``<student>/disco_student.json``."""

    model_config = ConfigDict(extra="ignore")

    input: StudentInput = StudentInput()
    max_length: int = Field(256, ge=8, description="tokens of conversation the student reads")
    quant_scale: int = Field(100, ge=1, description="query weights are round(w * quant_scale), as the index's")
    base_model: str = ""
    teacher: str = ""
    extra: dict[str, Any] = {}

    def text(self, question: str, history: Sequence[Mapping[str, Any]] | Sequence[tuple[str, str]] | None) -> str:
        """The student's input text for ``question`` after ``history`` (oldest first)."""
        return format_conversation(question, history, fmt=self.input)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CARD
        write_json(path, self.model_dump(mode="json"))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "StudentCard":
        """The card of a student folder; a folder without one (an older run, a plain SPLADE) gets the paper's
        defaults."""
        path = Path(folder) / CARD
        if not path.exists():
            return cls()
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
