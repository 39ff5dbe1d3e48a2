"""The search API's types, without torch: a conversation's turns, a hit, a result, the checks on a conversation
and the paths of a finished run. Imported by the HTTP app and the command line before any model loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from core.run_record import RunRecord


class Turn(BaseModel):
    """One turn of a conversation: who spoke and what was said."""

    model_config = ConfigDict(extra="forbid")

    speaker: Literal["user", "agent"]
    text: str


class Hit(BaseModel):
    id: str
    score: float = Field(description="the dot product of the quantised vectors / quant_scale**2")
    title: str = ""
    text: str = ""


class Result(BaseModel):
    results: list[Hit]
    timing_ms: dict[str, float] = Field(description="encode, search and total milliseconds")
    query: str = Field("", description="the student's input text (the formatted conversation)")
    terms: dict[str, float] | None = Field(None, description="query terms and weights (with explain): the terms "
                                                               "that have postings in the index")


def check_conversation(conversation: Sequence[Any]) -> list[Turn]:
    """The turns, checked: at least one, the last one the user's current question, no empty text."""
    turns = [t if isinstance(t, Turn) else Turn.model_validate(t) for t in conversation]
    if not turns:
        raise ValueError("the conversation is empty: give at least the current user turn")
    if turns[-1].speaker != "user":
        raise ValueError(f"the last turn (turn {len(turns)}) must be the user's current question, "
                         f"not {turns[-1].speaker!r}")
    if not turns[-1].text.strip():
        raise ValueError(f"the current question (turn {len(turns)}) is empty")
    return turns


def run_paths(run_dir: str | Path) -> dict[str, Path]:
    """student / lucene / corpus paths recorded in ``<run_dir>/run.json``, checked to exist."""
    record = RunRecord.read(run_dir, need=("ingest", "index", "distill"))
    return {"student": record.output("distill", "student"), "lucene": record.output("index", "lucene"),
            "corpus": record.output("ingest", "corpus")}
