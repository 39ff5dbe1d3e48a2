"""How one LLM teacher rewrites turns: :class:`RewriteConfig` (the ``rewrite`` section of a run's configuration).

Standard library and pydantic only: the vLLM worker reads it in a venv without the project's other dependencies.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RewriteConfig(BaseModel):
    """How one LLM teacher rewrites turns. Every field that changes outputs is part of :func:`prompt_hash`."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["transformers", "vllm"] = "transformers"
    model: str = "smollm2-135m-instruct"  # a short name of models.weights, a hub id or a local path
    name: str = "llm"  # the name of this LLM teacher in tables (REWRITES.teacher) and in teacher.systems
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
    # The expansion teacher ``<name>+answer`` (see :meth:`with_answer`) generates up to this many tokens.
    answer_max_new_tokens: int = Field(96, ge=1)

    def with_answer(self) -> "RewriteConfig":
        """The same LLM as the LLM4CS-style expansion teacher ``<name>+answer``: mode ``rewrite+answer``,
        room for the answer (``answer_max_new_tokens``). Reported as its own teacher beside ``<name>``."""
        return self.model_copy(update={"name": f"{self.name}+answer", "mode": "rewrite+answer",
                                       "max_new_tokens": self.answer_max_new_tokens})


# Fields that do not change what is generated (excluded from the hash).
# ``answer_max_new_tokens`` acts only through the ``max_new_tokens`` of :meth:`RewriteConfig.with_answer`.
_NOT_HASHED = {"name", "output_checks", "batch_size", "torch_threads", "vllm_batch_size", "shard_parts",
               "answer_max_new_tokens"}
