"""The student's input: the whole conversation as one text.

DiSCo (Lupart et al., SIGIR 2025, arXiv 2410.14609, and the authors' TopiOCQA preprocessing) reads
``q_n [SEP] a_{n-1} [SEP] q_{n-1} [SEP] ... a_0 [SEP] q_0``: the current question, then the earlier turns from
newest to oldest, system answers included, at most 256 tokens, cutting the END (the oldest turns drop first).
That is :class:`StudentInput`'s default; its fields make the other choices configurable (and ablated in
``benchmarks/ablations.py``): the order, whether agent answers are included and how long each may be, how many
earlier user turns are kept, the separator, and which end the tokenizer cuts.

``[SEP]`` written in the text is recognised by the BERT tokenizer as the special token (id 102).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

ROLES = ("user", "agent")


class StudentInput(BaseModel):
    """How a conversation becomes the student's text (defaults: the paper's format)."""

    model_config = ConfigDict(extra="forbid")

    order: Literal["newest_first", "oldest_first"] = Field(
        "newest_first", description="newest_first: q_n [SEP] a_{n-1} [SEP] q_{n-1} ...; oldest_first: q_0 ... q_n")
    answers: bool = Field(True, description="include the agent's answers")
    answer_max_words: int | None = Field(None, ge=1, description="cut each answer to this many words")
    history_turns: int | None = Field(None, ge=0, description="keep only this many earlier user turns (with "
                                                              "their answers); None keeps all")
    sep: str = "[SEP]"
    truncation: Literal["oldest", "newest"] = Field(
        "oldest", description="which end of the conversation the tokenizer cuts beyond max_length: 'oldest' keeps "
                              "the current question (the paper); 'newest' is the ablation")

    def truncation_side(self) -> Literal["left", "right"]:
        """The tokenizer's ``truncation_side`` that drops the turns named by :attr:`truncation`."""
        oldest_at_end = self.order == "newest_first"
        return "right" if (self.truncation == "oldest") == oldest_at_end else "left"


def _text(item: Any) -> tuple[str, str]:
    if isinstance(item, Mapping):
        role, text = item.get("role"), item.get("text")
    else:
        role, text = item
    if role not in ROLES:
        raise ValueError(f"history role must be one of {ROLES}, got {role!r}")
    return role, (text or "").strip()


def history_newest_first(history: Sequence[Any] | None) -> list[str]:
    """Texts of ``history`` (given oldest first, as (role, text) or {"role", "text"}) newest first.

    Empty or missing texts (e.g. an unanswered turn) are skipped so that no ``[SEP] [SEP]`` appears.
    """
    texts = [_text(item)[1] for item in (history or [])]
    return [t for t in reversed(texts) if t]


def _history(history: Sequence[Any] | None, fmt: StudentInput) -> list[str]:
    """The kept history texts, oldest first."""
    items = [_text(item) for item in (history or [])]
    if fmt.history_turns is not None:
        users = [i for i, (role, _) in enumerate(items) if role == "user"]
        start = users[-fmt.history_turns] if 0 < fmt.history_turns <= len(users) else (
            len(items) if fmt.history_turns == 0 else 0)
        items = items[start:]
    out = []
    for role, text in items:
        if role == "agent":
            if not fmt.answers:
                continue
            if fmt.answer_max_words is not None:
                text = " ".join(text.split()[: fmt.answer_max_words])
        if text:
            out.append(text)
    return out


def format_conversation(
    question: str,
    history: Sequence[tuple[str, str]] | Sequence[Mapping[str, Any]] | None,
    sep: str | None = None,
    fmt: StudentInput | None = None,
) -> str:
    """The student's text for ``question`` after ``history`` (oldest first), in the format ``fmt``.

    >>> format_conversation("when?", [("user", "who wrote it?"), ("agent", "Orwell.")])
    'when? [SEP] Orwell. [SEP] who wrote it?'
    >>> format_conversation("when?", [("user", "who wrote it?"), ("agent", "Orwell.")],
    ...                     fmt=StudentInput(order="oldest_first", answers=False))
    'who wrote it? [SEP] when?'
    """
    fmt = fmt or StudentInput()
    if sep is not None:
        fmt = fmt.model_copy(update={"sep": sep})
    past = _history(history, fmt)
    parts = [question.strip(), *reversed(past)] if fmt.order == "newest_first" else [*past, question.strip()]
    return f" {fmt.sep} ".join(parts)
