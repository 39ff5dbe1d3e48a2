"""The rewriting prompt, its configuration and the parsing of LLM outputs.

This module imports only the standard library and pydantic: the vLLM worker
(:mod:`models.rewrite.vllm_worker`) runs it inside a separate virtual environment that has vLLM but
not the rest of the project.

Prompt (method.md, "Rewriting prompt"; follow-up study of DiSCo): one user message holding an instruction
to rewrite the user's last question into a self-contained query, the conversation as ``user:`` /
``system:`` lines NEWEST FIRST (capped at ~``max_history_chars`` characters by dropping the oldest turns),
the question, and a ``Re-written query:`` marker. A single user message (no system role) because some
instruct models' chat templates (e.g. Mistral-7B-Instruct) reject a system message.

Output: the first non-empty line, with labels ("Re-written query:", "Rewrite:", "Query:", ...), role
prefixes copied from the prompt ("system:", "user:"), quotes and markdown emphasis stripped. An output that is empty or shorter than ``retry_min_words`` words is
generated once more with sampling (temperature 0.7, top-p 0.9).

Prompt ``few-shot`` (chosen for small models by measurement, docs/results.md "Rewrite quality"): the same
instruction and layout, preceded by :data:`FEW_SHOT` worked examples given as earlier user / assistant
exchanges of the chat (the project's own writing, not taken from any evaluation set). SmolLM2-135M with the
bare instruction mostly answers the question instead of rewriting it.

Output checks (``output_checks``, counted fallback): a rewrite that does not read as a query, or that drops
most of the utterance's own words (an answer, or a copied history line), or that is far longer than the
utterance, is replaced by the raw utterance (:func:`check_rewrite`); the parts keep the LLM's output, so the
checks change nothing that was generated and are not part of :func:`prompt_hash`.

Prompt ``compact`` (for a rewriter fine-tuned on this layout, models/rewriter/): the conversation, the question
and the marker without the instruction (the fine-tuning taught the task; about 75 tokens fewer a turn, which is
most of the cost on a CPU, in training and in rewriting alike).

Mode ``rewrite+answer`` (LLM4CS-style expansion): the LLM also writes a short answer on a second line
starting with ``Answer:``; the teacher text is ``"<rewrite> <answer>"``. The retry rule looks at the
rewrite part only.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

# Bump when build_messages / postprocess change in a way that changes outputs: it is part of prompt_hash.
PROMPT_VERSION = "3"

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


class RewriteConfig(BaseModel):
    """How one LLM teacher rewrites turns. Every field that changes outputs is part of :func:`prompt_hash`."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["transformers", "vllm"] = "transformers"
    model: str = "smollm2-135m-instruct"  # a short name of models.weights, a hub id or a local path
    teacher: str = "llm"  # the name of this teacher in tables (REWRITES.teacher)
    mode: Literal["rewrite", "rewrite+answer"] = "rewrite"
    max_new_tokens: int = Field(64, ge=1)
    num_beams: int = Field(1, ge=1)  # 1 = greedy; method.md: greedy or 4-beam search
    retry_min_words: int = Field(3, ge=0)
    retry_temperature: float = Field(0.7, gt=0)
    retry_top_p: float = Field(0.9, gt=0, le=1)
    max_history_chars: int = Field(3000, ge=0)
    # few-shot: FEW_SHOT examples come first; compact: no instruction (for a fine-tuned rewriter)
    prompt: Literal["instruction", "few-shot", "compact"] = "instruction"
    output_checks: bool = False  # replace rewrites failing check_rewrite by the raw utterance (counted)
    batch_size: int = Field(8, ge=1)  # transformers: sequences per generate call
    seed: int = 0
    # Weights' dtype; "auto": the checkpoint's (vLLM on GPU: "auto" or "bfloat16"). On a CPU without AVX-512 BF16 / AMX
    # bf16 is emulated and slower than float32 (models/cpu.py warns).
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    torch_threads: int | None = None  # transformers: torch threads while generating (None: leave as is)
    # Which python runs vLLM and extra vllm.LLM(...) arguments are not config fields (a Prefect deployment's
    # parameters must not name an executable or pass trust_remote_code): env DISCO_VLLM_PYTHON and
    # DISCO_VLLM_OPTIONS on the machine that runs the stage (models/rewrite/vllm_backend.py).
    vllm_batch_size: int = Field(256, ge=1)  # requests per vLLM call; a killed worker loses at most one
    # On a cluster (runner.kind=ray): whole parts (8 x batch_size turns) per shard, so each generate call sees the
    # batch it sees in one process (retrieval/rewrites.py).
    shard_parts: int = Field(4, ge=1)
    # The expansion teacher ``<teacher>+answer`` (see :meth:`with_answer`) generates up to this many tokens.
    answer_max_new_tokens: int = Field(96, ge=1)

    def with_answer(self) -> "RewriteConfig":
        """The same LLM as the LLM4CS-style expansion teacher ``<teacher>+answer``: mode ``rewrite+answer``,
        room for the answer (``answer_max_new_tokens``). Reported as its own teacher beside ``<teacher>``."""
        return self.model_copy(update={"teacher": f"{self.teacher}+answer", "mode": "rewrite+answer",
                                       "max_new_tokens": self.answer_max_new_tokens})


# Fields that do not change what is generated (excluded from the hash).
# ``answer_max_new_tokens`` acts only through the ``max_new_tokens`` of :meth:`RewriteConfig.with_answer`.
_NOT_HASHED = {"teacher", "output_checks", "batch_size", "torch_threads", "vllm_batch_size", "shard_parts",
               "answer_max_new_tokens"}


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


def needs_retry(text: str, min_words: int) -> bool:
    """True when a rewrite is empty or has fewer than ``min_words`` words."""
    return len((text or "").split()) < max(min_words, 1)


def finalize(raw: str, mode: str) -> tuple[str, str]:
    """(teacher text, rewrite part) of a raw output: the retry rule looks at the rewrite part."""
    if mode == "rewrite+answer":
        rewrite, answer = split_rewrite_answer(raw)
        return (f"{rewrite} {answer}".strip() if rewrite else ""), rewrite
    rewrite = postprocess(raw)
    return rewrite, rewrite


def choose(first: tuple[str, str], retry: tuple[str, str], min_words: int) -> str:
    """Which of two finalized outputs to keep after a retry: the retry when it passes the rule,
    else whichever rewrite part has more words (ties keep the first)."""
    if not needs_retry(retry[1], min_words):
        return retry[0]
    return retry[0] if len(retry[1].split()) > len(first[1].split()) else first[0]


def first_line_done(text: str) -> bool:
    """True once a partial ``rewrite``-mode output holds a complete first content line, so generation can
    stop early without changing :func:`postprocess`'s result."""
    if "\n" not in text:
        return False
    head = text[: text.rfind("\n")]
    return bool(postprocess(head))


_TOKEN_RE = re.compile(r"[a-z0-9]+")
# How a query or request starts: a question word, an auxiliary, or an imperative of search.
QUERY_STARTS = frozenset(
    "what what's whats who who's whom whose when where where's why how how's which is are was were do does did "
    "can could should would will shall may might has have had am tell describe explain list give name find show "
    "compare define discuss provide summarize summarise identify".split()
)
# Share of the utterance's words (pronouns and articles aside) a rewrite must keep: all of them, since resolving
# references only adds words. Chosen with benchmarks/rewrite_checks.py on the selection slices (CANARD dev turns
# 1-335, TREC CAsT 2019 turns 1-259), where 0.8, 0.9 and 1.0 tie (equal to or above the raw utterance on every
# slice) and the strictest of the tied values is taken; 0.8 was taken first from a grid that stopped there, and the
# grid was extended after two held-out CAsT 2019 slices came out one or two turns under the raw utterance with
# rewrites that swapped a word ("most famous female" -> "most successful female pirate"). So it is reported on
# turns and datasets never looked at (docs/results.md, "Rewrite quality").
MIN_KEPT = 1.0
MAX_GROWTH = 12  # words a rewrite may add to the utterance


# "The Avengers: Who are The Avengers?": a heading (a topic and a colon) before the text is a title, not a query
_HEADING_RE = re.compile(r"\s*([^:?]{1,80}):\s+\S")


def _first_word(text: str) -> str:
    words = text.lower().split()
    return words[0].strip("\"'“*:,") if words else ""


def looks_like_query(text: str) -> bool:
    """True when ``text`` ends with ``?`` or starts with a question word or request verb, and does not open with a
    heading (``"Topic: ..."``, unless the heading itself starts like a query)."""
    t = (text or "").strip()
    if not t:
        return False
    heading = _HEADING_RE.match(t)
    if heading and _first_word(heading.group(1)) not in QUERY_STARTS:
        return False
    if t.rstrip("\"'” ").endswith("?"):
        return True
    return _first_word(t) in QUERY_STARTS


CHECKS = ("not-a-query", "drops-words", "too-long", "changes-question")
QUESTION_WORDS = frozenset("what who whom whose when where why how which".split())
# What a rewrite replaces: the words "drops-words" does not count.
REFERENCES = frozenset("he she it they them him her his hers its their theirs this that these those there one ones "
                       "the a an".split())


def check_rewrite(rewrite: str, question: str, min_kept: float = MIN_KEPT, max_growth: int = MAX_GROWTH,
                  checks: Sequence[str] = CHECKS) -> str | None:
    """Why ``rewrite`` should not replace ``question`` (None when it passes): ``not-a-query`` (an answer or a
    statement), ``drops-words`` (keeps under ``min_kept`` of the utterance's words, pronouns and articles aside: they are
    what a rewrite replaces), ``too-long`` (adds more than
    ``max_growth`` words), ``changes-question`` (the utterance starts with a question word the rewrite does not
    contain: resolving references never changes what is asked, "where did they marry" -> "When did they marry?").
    Thresholds chosen on CANARD dev (benchmarks/rewrite_checks.py)."""
    if "not-a-query" in checks and not looks_like_query(rewrite):
        return "not-a-query"
    words = set(_TOKEN_RE.findall(question.lower())) - REFERENCES
    got = _TOKEN_RE.findall(rewrite.lower())
    if "drops-words" in checks and words and len(words & set(got)) / len(words) < min_kept:
        return "drops-words"
    if "too-long" in checks and len(got) > len(_TOKEN_RE.findall(question.lower())) + max_growth:
        return "too-long"
    asked = _TOKEN_RE.findall(question.lower())[:1]
    if "changes-question" in checks and asked and asked[0] in QUESTION_WORDS and asked[0] not in got:
        return "changes-question"
    return None
