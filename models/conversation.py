"""The student's input: the whole conversation as one text, current question first.

DiSCo (Lupart et al., SIGIR 2025, arXiv 2410.14609, and the authors' TopiOCQA preprocessing):
``q_n [SEP] a_{n-1} [SEP] q_{n-1} [SEP] ... a_0 [SEP] q_0`` -- the current question, then the earlier turns
from newest to oldest, system answers included.

Truncation is left to the tokenizer (``truncation=True, max_length=256``, BERT's default right side): it cuts
the END of this string, which holds the OLDEST turns, so the current question and the latest exchanges are
always kept. ``[SEP]`` written in the text is recognised by the BERT tokenizer as the special token (id 102).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

ROLES = ("user", "agent")


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


def format_conversation(
    question: str, history: Sequence[tuple[str, str]] | Sequence[Mapping[str, Any]] | None, sep: str = "[SEP]"
) -> str:
    """``q_n [SEP] a_{n-1} [SEP] q_{n-1} ... [SEP] q_0`` from the question and its history (oldest first).

    >>> format_conversation("when?", [("user", "who wrote it?"), ("agent", "Orwell.")])
    'when? [SEP] Orwell. [SEP] who wrote it?'
    """
    parts = [question.strip(), *history_newest_first(history)]
    return f" {sep} ".join(parts)
