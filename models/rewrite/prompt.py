"""The rewriting prompt: the chat messages an LLM teacher reads, and the hashes that identify what it generates.

Standard library and pydantic only (with :mod:`models.rewrite.config`, :mod:`.parse`, :mod:`.retry`): the vLLM worker
(:mod:`models.rewrite.vllm_worker`) runs them inside a separate virtual environment that has vLLM but not the rest
of the project.

Prompt (method.md, "Rewriting prompt"; follow-up study of DiSCo): one user message holding an instruction
to rewrite the user's last question into a self-contained query, the conversation as ``user:`` /
``system:`` lines NEWEST FIRST (capped at ~``max_history_chars`` characters by dropping the oldest turns),
the question, and a ``Re-written query:`` marker. A single user message (no system role) because some
instruct models' chat templates (e.g. Mistral-7B-Instruct) reject a system message.

Prompt ``few-shot`` (chosen for small models by measurement, docs/results.md "Rewrite quality"): the same
instruction and layout, preceded by :data:`FEW_SHOT` worked examples given as earlier user / assistant
exchanges of the chat (the project's own writing, not taken from any evaluation set). SmolLM2-135M with the
bare instruction mostly answers the question instead of rewriting it.

Prompt ``compact`` (for a rewriter fine-tuned on this layout, models/rewriter/): the conversation, the question
and the marker without the instruction (the fine-tuning taught the task; about 75 tokens fewer a turn, which is
most of the cost on a CPU, in training and in rewriting alike).

Mode ``rewrite+answer`` (LLM4CS-style expansion): the LLM also writes a short answer on a second line
starting with ``Answer:``; the teacher text is ``"<rewrite> <answer>"`` (:mod:`.parse`).

:func:`prompt_hash` identifies what a configuration generates: the rendered template, every setting that changes
the text, and :data:`PROMPT_VERSION`, derived from the code that builds prompts, parses outputs and retries
(no hand-bumped number to forget).
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from models.rewrite.config import _NOT_HASHED, RewriteConfig


def _code_version(*names: str) -> str:
    """Hash of the code of these sibling modules: their syntax trees without docstrings (comments, blank lines and
    line numbers are not in a tree), as stages/code.py hashes a stage's code."""
    h = hashlib.sha256()
    for name in names:
        tree = ast.parse((Path(__file__).with_name(f"{name}.py")).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        h.update(name.encode() + ast.dump(tree).encode())
    return h.hexdigest()[:16]


# Part of prompt_hash: changes when the code that builds prompts (this module), parses outputs or retries changes.
PROMPT_VERSION = _code_version("prompt", "parse", "retry")

# Worked examples of the ``few-shot`` prompt: (history oldest first, question, rewrite). Written for this
# project: a pronoun, a vague follow-up, a turn that needs no rewriting, an ellipsis.
FEW_SHOT: list[tuple[list[tuple[str, str]], str, str]] = [
    ([("user", "Who wrote the novel Dracula?"), ("agent", "Bram Stoker, an Irish author, published it in 1897.")],
     "Where was he born?", "Where was Bram Stoker born?"),
    ([("user", "What is the Great Barrier Reef?"),
      ("agent", "The largest coral reef system in the world, off the coast of Queensland, Australia.")],
     "Why is it dying?", "Why is the Great Barrier Reef dying?"),
    ([("user", "How do I bake sourdough bread?"), ("agent", "Mix a starter, flour, water and salt, let it rise "
                                                            "overnight, then bake it in a hot oven.")],
     "What is the capital of Canada?", "What is the capital of Canada?"),
    ([("user", "When did the Beatles first tour the United States?"),
      ("agent", "In February 1964, starting with The Ed Sullivan Show.")],
     "What else happened that year?", "What else happened to the Beatles in 1964?"),
]

INSTRUCTION_REWRITE = (
    "Rewrite the user's last question in the conversation below into a self-contained search query. "
    "The query must be understandable without the conversation: replace pronouns and vague references "
    "(it, they, that, the first one, ...) with the names and topics they refer to, and keep the meaning "
    "of the question. Write only the re-written query, on one line."
)

INSTRUCTION_REWRITE_ANSWER = (
    "Rewrite the user's last question in the conversation below into a self-contained search query. "
    "The query must be understandable without the conversation: replace pronouns and vague references "
    "(it, they, that, the first one, ...) with the names and topics they refer to, and keep the meaning "
    "of the question. Write the re-written query on one line, then on a second line starting with "
    "\"Answer:\" a short answer to it (one or two sentences)."
)

CONVERSATION_HEADER = "Conversation (most recent turn first):"
NO_HISTORY = "(no earlier turns)"
QUESTION_LABEL = "Question:"
MARKER = "Re-written query:"
ANSWER_LABEL = "Answer:"

# What each history role is called in the prompt.
ROLE_NAMES = {"user": "user", "agent": "system", "system": "system", "assistant": "system"}

def _role_text(item: Any) -> tuple[str, str]:
    if isinstance(item, Mapping):
        role = item.get("role")
        text = item.get("text", item.get("content"))
    else:
        role, text = item
    role = str(role or "").strip().lower()
    if role not in ROLE_NAMES:
        raise ValueError(f"history role must be 'user' or 'agent', got {role!r}")
    return ROLE_NAMES[role], " ".join(str(text or "").split())


def format_history(history: Iterable[Any] | None, max_chars: int) -> list[str]:
    """``role: text`` lines, newest first, keeping whole turns while they fit in ``max_chars``.

    ``history`` is oldest first. The newest turn alone is cut to ``max_chars`` when it is longer (so a
    single very long answer never leaves the prompt without context); older turns are dropped whole.
    """
    lines: list[str] = []
    used = 0
    for role, text in reversed([_role_text(h) for h in (history or [])]):
        if not text:
            continue
        line = f"{role}: {text}"
        cost = len(line) + 1  # + newline
        if used + cost > max_chars:
            if not lines and max_chars > len(role) + 2:
                lines.append(line[: max_chars - 1].rstrip())
            break
        lines.append(line)
        used += cost
    return lines


def _user_message(question: str, history: Sequence[Any] | None, max_chars: int, mode: str,
                  instruction: bool = True) -> str:
    lines = format_history(history, max_chars)
    conversation = "\n".join(lines) if lines else NO_HISTORY
    question = " ".join(str(question).split())[: max(max_chars, 1000)]  # no overflow of the context
    body = f"{CONVERSATION_HEADER}\n{conversation}\n\n{QUESTION_LABEL} {question}\n\n{MARKER}"
    if not instruction:
        return body
    return f"{INSTRUCTION_REWRITE_ANSWER if mode == 'rewrite+answer' else INSTRUCTION_REWRITE}\n\n{body}"


def build_messages(
    question: str,
    history: Sequence[Any] | None,
    max_chars: int = 3000,
    mode: str = "rewrite",
    prompt: str = "instruction",
) -> list[dict[str, str]]:
    """The chat messages asking an LLM to rewrite ``question`` given ``history`` (oldest first)."""
    messages: list[dict[str, str]] = []
    if prompt == "few-shot" and mode == "rewrite":
        for hist, q, rewrite in FEW_SHOT:
            messages += [{"role": "user", "content": _user_message(q, hist, max_chars, mode)},
                         {"role": "assistant", "content": rewrite}]
    elif prompt not in ("instruction", "few-shot", "compact"):
        raise ValueError(f"unknown prompt {prompt!r}: 'instruction', 'few-shot' or 'compact'")
    messages.append({"role": "user", "content": _user_message(question, history, max_chars, mode,
                                                              instruction=prompt != "compact")})
    return messages


def prompt_hash(cfg: RewriteConfig) -> str:
    """Hash of the prompt template and of every setting that changes the generated text (16 hex)."""
    settings = cfg.model_dump(exclude=_NOT_HASHED)
    settings["model"] = _model_identity(cfg.model)
    template = {
        "version": PROMPT_VERSION,
        "instruction": INSTRUCTION_REWRITE_ANSWER if cfg.mode == "rewrite+answer" else INSTRUCTION_REWRITE,
        # Render a fixed example: any change in layout changes the hash.
        "example": build_messages("Q?", [("user", "U"), ("agent", "A")], cfg.max_history_chars, cfg.mode,
                                  cfg.prompt),
    }
    blob = json.dumps({"template": template, "settings": settings}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _model_identity(model: str) -> str:
    """A model's name for the hash: a rewriter stage's merged folder (it holds ``disco_rewriter.json``) by its card's
    content, so that the same rewriter hashes alike in any run folder; any other name as it is."""
    from pathlib import Path

    card = Path(model) / "disco_rewriter.json"
    try:
        return "rewriter:" + hashlib.sha256(card.read_bytes()).hexdigest()[:16] if card.is_file() else model
    except OSError:
        return model


def input_hash(messages: list[dict[str, str]]) -> str:
    """Identity of one request's messages (so a turn whose text changed is not taken from a cache)."""
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
