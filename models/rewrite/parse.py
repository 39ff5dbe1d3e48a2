"""A raw LLM output -> the rewrite (and, in ``rewrite+answer`` mode, the answer) it holds.

Output: the first non-empty line, with labels ("Re-written query:", "Rewrite:", "Query:", ...), role prefixes copied
from the prompt ("system:", "user:"), quotes and markdown emphasis stripped. In ``rewrite+answer`` mode the answer is
the line labelled ``Answer:`` (or the next content line). Standard library only (the vLLM worker reads it).
"""

from __future__ import annotations

import re

# Labels a model may put before its rewrite (or answer); stripped repeatedly, case-insensitively.
_LABEL_RE = re.compile(
    r"^\s*(?:(?:here\s+is\s+)?(?:the\s+)?"
    r"(?:re-?written|rewritten|self-contained|standalone|stand-alone|reformulated|resolved|final|new)?\s*"
    r"(?:search\s+)?(?:query|question|rewrite|re-?write|output|answer)"
    r"(?:\s*\d+)?(?:\s+is)?(?:\s*:|\s+[-–]))\s*",
    re.IGNORECASE,
)
_LABEL_ONLY_RE = re.compile(
    r"^\s*(?:(?:here\s+is\s+)?(?:the\s+)?"
    r"(?:re-?written|rewritten|self-contained|standalone|stand-alone|reformulated|resolved|final|new)?\s*"
    r"(?:search\s+)?(?:query|question|rewrite|re-?write|output)\s*:?\s*)$",
    re.IGNORECASE,
)
# Conversation role prefixes a small model copies from the prompt ("system: ...").
# A speaker label the model echoes from the prompt: "User:", "The user:", "The user's last question is:",
# "The user's last question was re-written to:".
_ROLE_RE = re.compile(r"^\s*(?:the\s+)?(?:user|system|assistant)"
                      r"(?:'s(?:\s+(?:last|current|latest|final|new))?\s+(?:question|query)(?:\s+(?:is|was))?"
                      r"(?:\s+re-?written(?:\s+(?:to|as))?)?)?\s*:\s*",
                      re.IGNORECASE)
# ... and the same without a speaker: "The question was re-written to:".
_ECHO_RE = re.compile(r"^\s*(?:the\s+)?(?:question|query)\s+(?:is|was)\s+re-?written(?:\s+(?:to|as))?\s*:\s*",
                      re.IGNORECASE)
_ANSWER_RE = re.compile(r"^\s*(?:\*\*|__)?\s*answer\s*(?:\*\*|__)?\s*:\s*", re.IGNORECASE)
_BULLET_RE = re.compile(r"^\s*(?:[-*•>]|\d+[.)])\s+")
_QUOTES = "\"'`“”‘’«»"


def _clean(line: str) -> str:
    """Strip bullets, markdown emphasis, labels and quotes from one line, until nothing changes."""
    prev = None
    s = line.strip()
    while s != prev:
        prev = s
        s = _BULLET_RE.sub("", s)
        s = s.replace("**", "").replace("__", "").strip()
        s = _LABEL_RE.sub("", s).strip()
        s = _ROLE_RE.sub("", s).strip()
        s = _ECHO_RE.sub("", s).strip()
        if len(s) >= 2 and s[0] in _QUOTES and s[-1] in _QUOTES:
            s = s[1:-1].strip()
        s = s.strip(_QUOTES + " \t").strip()
    return " ".join(s.split())


def postprocess(text: str) -> str:
    """The rewrite in a raw LLM output: the first line that has content once labels and quotes are gone."""
    for line in (text or "").splitlines():
        if _LABEL_ONLY_RE.match(line.replace("**", "").replace("__", "")):
            continue  # a label on its own line: the rewrite follows on the next one
        cleaned = _clean(line)
        if cleaned:
            return cleaned
    return ""


def split_rewrite_answer(text: str) -> tuple[str, str]:
    """(rewrite, answer) from a ``rewrite+answer`` output: the first content line, then the line
    labelled ``Answer:`` (or, failing that, the next content line)."""
    lines = (text or "").splitlines()
    rewrite, rest_at = "", len(lines)
    for i, line in enumerate(lines):
        if _ANSWER_RE.match(line):
            break  # an answer before any rewrite: no rewrite
        if _LABEL_ONLY_RE.match(line.replace("**", "").replace("__", "")):
            continue
        cleaned = _clean(line)
        if cleaned:
            rewrite, rest_at = cleaned, i + 1
            break
    answer = ""
    rest = lines[rest_at:] if rewrite else lines
    for line in rest:
        if _ANSWER_RE.match(line):
            answer = _clean(_ANSWER_RE.sub("", line))
            if answer:
                break
    if not answer and rewrite:
        for line in rest:
            cleaned = _clean(line)
            if cleaned:
                answer = cleaned
                break
    return rewrite, answer


def finalize(raw: str, mode: str) -> tuple[str, str]:
    """(teacher text, rewrite part) of a raw output: the retry rule looks at the rewrite part."""
    if mode == "rewrite+answer":
        rewrite, answer = split_rewrite_answer(raw)
        return (f"{rewrite} {answer}".strip() if rewrite else ""), rewrite
    rewrite = postprocess(raw)
    return rewrite, rewrite


def first_line_done(text: str) -> bool:
    """True once a partial ``rewrite``-mode output holds a complete first content line, so generation can
    stop early without changing :func:`postprocess`'s result."""
    if "\n" not in text:
        return False
    head = text[: text.rfind("\n")]
    return bool(postprocess(head))
