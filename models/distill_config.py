"""The distillation settings (one pydantic model, shown as a form in the Prefect UI).

Lupart, Aliannejadi, Kanoulas, SIGIR 2025 (arXiv 2410.14609): see :mod:`models.distill` for the method and
:mod:`models.examples` for how the negative window and the positive's teacher score are chosen.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.conversation import StudentInput

# The losses of models/losses.py, named here (not there) so that reading a configuration does not import torch.
MainLoss = Literal["kl", "margin_mse", "info_nce", "rep_mse"]
Reg = Literal["none", "l1", "flops"]


class DevSearch(BaseModel):
    """Settings the distill stage chooses on the run's own dev turns before training (issue 25), one axis at a
    time in this order, each with the earlier choices fixed: whom the student learns from (``learn_from``: a
    computed teacher or ``fused``, for the run's ``data``; a pooled extra dataset keeps its own teacher), the
    student's ``input`` format, its residual-branch depth (``extra_layers``), its query sparsity weight
    (``lambda_q``). Each candidate trains for ``budget`` times
    the full training's steps (or epochs), its best dev epoch compared, and the winner then trains in full. An axis with fewer
    than two candidates is not searched (one candidate simply sets it). Inputs and depths are compared by
    ``selection_metric``, ties to the earlier candidate (list the cheaper first); sparsity weights by the same
    metric among those within ``distill.max_terms_ratio`` of the last turn's query terms. Without dev turns
    nothing is searched: the configured values train."""

    model_config = ConfigDict(extra="forbid")

    budget: float = Field(0.4, gt=0, le=1, description="share of distill.steps (or epochs) each candidate trains")
    learn_from: list[str] = Field([], description="candidate teachers (among teacher.systems, or 'fused')")
    input: list[StudentInput] = Field([], description="candidate input formats")
    extra_layers: list[int] = Field([], description="candidate residual-branch depths (0: the plain encoder)")
    lambda_q: list[float] = Field([], description="candidate query sparsity weights (distill.reg's)")

    @model_validator(mode="after")
    def _check(self) -> "DevSearch":
        if any(d < 0 for d in self.extra_layers) or any(v < 0 for v in self.lambda_q):
            raise ValueError("search: extra_layers and lambda_q candidates must be >= 0")
        return self

    def axes(self) -> list[tuple[str, list]]:
        """The searched axes, in order, with their candidates."""
        return [(name, values) for name, values in (("learn_from", self.learn_from), ("input", self.input),
                                                    ("extra_layers", self.extra_layers), ("lambda_q", self.lambda_q))
                if len(values) > 1]


class DistillConfig(BaseModel):
    """Training settings. The paper's values (AdamW 2e-5, 1% warm-up, linear decay, 10 turns per batch, 5
    epochs, 16 negatives from ranks 11-960 with the rank-11 positive rule, 0.99 KL + 0.01 in-batch contrastive,
    seed 123) are the ``paper`` preset's; the defaults here fit the corpus and the data they meet
    (``negative_window="auto"``, ``positive_score="auto"``: see :func:`models.examples.window_for`)."""

    model_config = ConfigDict(extra="forbid")

    learn_from: str = Field("fused", description="whom the student learns from: a teacher's name (one of "
                                                 "teacher.systems), or 'fused'")
    input: StudentInput = StudentInput()
    # More capacity (issue 25): layers on a residual branch whose output starts at zero (models/branch.py)
    extra_layers: int = Field(0, ge=0, le=12, description="transformer layers on the student's residual branch")
    lr: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.01, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = 1.0  # the authors' HF Trainer clips at 1.0 by default
    batch_size: int = Field(10, ge=1)  # turns per micro-batch
    epochs: int = Field(5, ge=1)
    steps: int | None = Field(None, ge=1, description="optimizer steps in all (overrides epochs): small "
                                                      "datasets need a number of steps, not of passes")
    grad_accumulation: int = Field(1, ge=1)
    n_negatives: int = Field(16, ge=1)
    negative_window: tuple[int, int] | Literal["auto"] = "auto"
    # "rank11" (authors): a positive inside the window keeps its score, one outside it (ranks 1-10, past 960,
    # or not retrieved) gets the score of the window's first rank. "teacher": its own score wherever the
    # run retrieved it, else the run's lowest score. "auto": rank11 with the paper's window, else teacher.
    positive_score: Literal["auto", "rank11", "teacher"] = "auto"
    min_relevance: int = 1
    loss: MainLoss = "kl"
    temperature: float = Field(1.0, gt=0)
    info_nce_temperature: float = Field(0.05, gt=0)
    main_weight: float = Field(0.99, ge=0, description="weight of the main loss term, whichever `loss` is")
    contrastive_weight: float = Field(0.01, ge=0)
    reg: Reg = "flops"
    lambda_q: float = Field(0.0, ge=0)
    reg_warmup_ratio: float = Field(0.1, ge=0, le=1)
    anti_zero_weight: float = Field(1.0, ge=0)  # the authors always add it with weight 1
    seed: int = 123
    # Model selection: with dev turns in the data (data.split.dev_fraction > 0), score the student on them
    # after every epoch and keep the best epoch; stop after `patience` epochs without a better one.
    select_on_dev: bool = True
    selection_metric: Literal["RR@10", "nDCG@3", "R@10", "R@100"] = "RR@10"
    patience: int | None = Field(None, ge=1)
    # WiSE-FT (Wortsman et al. 2022): after choosing the epoch, also score alpha * student + (1 - alpha) * the
    # starting encoder on dev for each alpha here, and keep the best (models/interpolation.py); [1.0]: off.
    interpolate: list[float] = Field([1.0], min_length=1)
    # Model soup (Wortsman et al., ICML 2022): after the full training with `seed`, train the same setting once
    # per seed here, from the same initial weights, and average the dev-best epochs greedily on dev
    # (models/soup.py); the interpolation above then mixes the soup. []: one training run, as without it.
    soup_seeds: list[int] = Field([], description="extra training seeds averaged into a greedy model soup on "
                                                  "dev (models/soup.py); empty: no soup")
    # Sparsity as a goal: epochs, mixes and searched settings whose mean dev query terms exceed this many times
    # the last turn's (the utterance alone through the frozen encoder) are not kept while one within it exists.
    max_terms_ratio: float | None = Field(None, gt=0)
    search: DevSearch = DevSearch()
    # Whose dev turns choose: the "first" dataset's only (every turn of an extra dataset trains), or "all" pooled
    # training datasets (each keeps data.split.dev_fraction of its conversations for dev, scored as one set).
    # "all" was tried for the zero-shot runs and chose later, worse epochs (docs/results.md).
    dev_datasets: Literal["first", "all"] = "first"
    # Mixed precision of the student's forward: "bf16" autocast (GPU, or a CPU with AVX-512 BF16: see
    # benchmarks/train_step.py), "fp16" autocast with loss scaling (CUDA only; the paper's setting).
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, cuda, cuda:N, mps or xpu")
    max_turns: int | None = Field(None, ge=1)
    keep_checkpoints: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "DistillConfig":
        if not re.fullmatch(r"auto|cpu|mps|(cuda|xpu)(:\d+)?", self.device):
            raise ValueError(f"device {self.device!r} is not auto, cpu, cuda, cuda:N, mps, xpu or xpu:N")
        if self.negative_window != "auto":
            lo, hi = self.negative_window
            if not 1 <= lo <= hi:
                raise ValueError(f"negative_window must be 1 <= first <= last, got {self.negative_window}")
        if 1.0 not in self.interpolate or not all(0.0 <= a <= 1.0 for a in self.interpolate):
            raise ValueError(f"interpolate: alphas in [0, 1] including 1.0 (the trained student), "
                             f"got {self.interpolate}")
        if len(set(self.soup_seeds)) != len(self.soup_seeds) or self.seed in self.soup_seeds:
            raise ValueError(f"soup_seeds: distinct seeds other than seed ({self.seed}), got {self.soup_seeds}")
        if self.reg == "none" and (self.lambda_q > 0 or any(v > 0 for v in self.search.lambda_q)):
            raise ValueError("lambda_q > 0 needs reg='l1' or reg='flops'")
        return self
