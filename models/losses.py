"""Training losses of DiSCo (Lupart et al., SIGIR 2025, arXiv 2410.14609) and their composition.

Conventions: ``student`` / ``teacher`` score tensors are [B, N] with each turn's positive at index 0 and its
sampled negatives after it; reps are [B, V] SPLADE vectors. Every function returns a scalar tensor.

As in sentence-transformers, each loss is also a class (one per loss) that reads what it needs from one
:class:`LossInputs` and declares what the examples must carry (``needs_targets``: the teacher rewrites' vectors);
:class:`DistillLoss` composes a main loss with the weighted auxiliary terms and regularisers. The configuration
names the main loss (``distill.loss``); :data:`MAIN_LOSSES` maps each name to its class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from models.distill_config import MainLoss, Reg


def kl_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """DiSCo's score distillation: KL(softmax(teacher/T) || softmax(student/T)) per turn over its N passages,
    averaged over the batch ("batchmean"; no T^2 factor, the paper uses T = 1)."""
    s = F.log_softmax(student / temperature, dim=-1)
    t = F.log_softmax(teacher / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean")


def in_batch_contrastive(
    query_reps: torch.Tensor, doc_reps: torch.Tensor, positive_index: torch.Tensor
) -> torch.Tensor:
    """DiSCo's auxiliary term: cross-entropy of each query's positive (row ``positive_index[i]`` of
    ``doc_reps``) against every passage of the batch (all turns' negatives and the other turns' positives)."""
    return F.cross_entropy(query_reps @ doc_reps.T, positive_index)


def margin_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MarginMSE (Hofstaetter et al. 2020), a DiSCo variant: MSE of (s_pos - s_neg) vs (t_pos - t_neg)."""
    return F.mse_loss(student[:, :1] - student[:, 1:], teacher[:, :1] - teacher[:, 1:])


def info_nce(student: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE over each turn's own passages (positive at index 0), temperature 0.05: a DiSCo variant."""
    target = torch.zeros(student.shape[0], dtype=torch.long, device=student.device)
    return F.cross_entropy(student / temperature, target)


def representation_mse(student_reps: torch.Tensor, target_reps: torch.Tensor) -> torch.Tensor:
    """Representation distillation, the objective DiSCo relaxes (ConvDR, Yu et al. 2021; coSPLADE, Hai et al.
    2023; LeCoRe, Mao et al. 2023): pull the conversation's vector onto the teacher rewrite's vector, squared
    error summed over the vocabulary, averaged over the batch. Score distillation only asks for the same
    scores on the sampled passages: any point of that hyperplane, not this one point."""
    return (student_reps - target_reps).pow(2).sum(dim=-1).mean()


def flops_reg(reps: torch.Tensor) -> torch.Tensor:
    """FLOPS regulariser (Paria et al. 2020; SPLADE): sum_j (mean_i |w_ij|)^2."""
    return reps.abs().mean(dim=0).pow(2).sum()


def l1_reg(reps: torch.Tensor) -> torch.Tensor:
    """L1 regulariser (the authors' query-side default): mean_i sum_j |w_ij|."""
    return reps.abs().sum(dim=-1).mean()


def anti_zero(reps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """DiSCo's anti-collapse term: mean_i 1 / ((sum_j w_ij)^2 + eps). (The authors' code takes one
    1/(sum over the whole batch)^2; per row, an all-zero query is penalised even beside non-zero ones.)"""
    return (1.0 / (reps.sum(dim=-1).pow(2) + eps)).mean()


def quadratic_warmup(lambda_max: float, step: int, warmup_steps: int) -> float:
    """SPLADE's regularisation schedule: lambda_max * min(1, step / warmup_steps)^2 (step counted from 1)."""
    if warmup_steps <= 0:
        return float(lambda_max)
    return float(lambda_max) * min(1.0, step / warmup_steps) ** 2


@dataclass
class LossInputs:
    """What one micro-batch offers the losses."""

    query_reps: torch.Tensor  # [B, V] the student's vectors of the conversations
    doc_reps: torch.Tensor  # [M, V] the batch's distinct passages (frozen)
    doc_index: torch.Tensor  # [B, N] rows of doc_reps per turn, positive first
    teacher: torch.Tensor  # [B, N] the teacher's scores of those passages
    target_reps: torch.Tensor | None = None  # [B, V] the teacher rewrites' vectors (RepresentationMSE only)

    @property
    def student(self) -> torch.Tensor:
        """[B, N] the student's scores of each turn's passages."""
        return (self.query_reps @ self.doc_reps.T).gather(1, self.doc_index)


@dataclass
class KLDistillation:
    """DiSCo's main loss: :func:`kl_distillation` of the teacher's scores."""

    temperature: float = 1.0
    name: ClassVar[str] = "kl"
    needs_targets: ClassVar[bool] = False

    def __call__(self, x: LossInputs) -> torch.Tensor:
        return kl_distillation(x.student, x.teacher, self.temperature)


@dataclass
class MarginMSE:
    """:func:`margin_mse` (Hofstaetter et al. 2020), a DiSCo variant."""

    name: ClassVar[str] = "margin_mse"
    needs_targets: ClassVar[bool] = False

    def __call__(self, x: LossInputs) -> torch.Tensor:
        return margin_mse(x.student, x.teacher)


@dataclass
class InfoNCE:
    """:func:`info_nce` over each turn's own passages (the teacher's scores unused), a DiSCo variant."""

    temperature: float = 0.05
    name: ClassVar[str] = "info_nce"
    needs_targets: ClassVar[bool] = False

    def __call__(self, x: LossInputs) -> torch.Tensor:
        return info_nce(x.student, self.temperature)


@dataclass
class RepresentationMSE:
    """:func:`representation_mse` onto the teacher rewrites' vectors (the objective DiSCo relaxes)."""

    name: ClassVar[str] = "rep_mse"
    needs_targets: ClassVar[bool] = True

    def __call__(self, x: LossInputs) -> torch.Tensor:
        if x.target_reps is None:
            raise ValueError("loss 'rep_mse' needs the teacher rewrites' vectors (target_reps)")
        return representation_mse(x.query_reps, x.target_reps)


@dataclass
class InBatchContrastive:
    """:func:`in_batch_contrastive`: each turn's positive against every passage of the batch."""

    name: ClassVar[str] = "contrastive"

    def __call__(self, x: LossInputs) -> torch.Tensor:
        return in_batch_contrastive(x.query_reps, x.doc_reps, x.doc_index[:, 0])


@dataclass
class FlopsReg:
    """:func:`flops_reg` of the query vectors."""

    name: ClassVar[str] = "flops"

    def __call__(self, x: LossInputs) -> torch.Tensor:
        return flops_reg(x.query_reps)


@dataclass
class L1Reg:
    """:func:`l1_reg` of the query vectors."""

    name: ClassVar[str] = "l1"

    def __call__(self, x: LossInputs) -> torch.Tensor:
        return l1_reg(x.query_reps)


@dataclass
class AntiZero:
    """:func:`anti_zero` of the query vectors."""

    name: ClassVar[str] = "anti_zero"

    def __call__(self, x: LossInputs) -> torch.Tensor:
        return anti_zero(x.query_reps)


MAIN_LOSSES: dict[str, type] = {c.name: c for c in (KLDistillation, MarginMSE, InfoNCE, RepresentationMSE)}
REGULARISERS: dict[str, type] = {c.name: c for c in (FlopsReg, L1Reg)}


def needs_targets(loss: MainLoss) -> bool:
    """Whether the main loss ``loss`` needs the teacher rewrites' vectors in its examples."""
    return MAIN_LOSSES[loss].needs_targets


@dataclass
class DistillLoss:
    """main (``loss``: score distillation by KL, MarginMSE or InfoNCE, or representation distillation by MSE)
    * ``main_weight`` + contrastive * ``contrastive_weight`` + lambda_q(step) * reg(q)
    + ``anti_zero_weight`` * anti_zero(q).

    Each weight is used exactly as given (the authors' config mapping silently replaced the query lambda
    by the document one); ``lambda_q > 0`` with ``reg="none"`` is an error rather than ignored. The
    regulariser acts on the query (student) reps only: the document side is frozen; its weight follows
    SPLADE's quadratic warm-up over ``reg_warmup_steps``.
    """

    loss: MainLoss = "kl"
    temperature: float = 1.0
    info_nce_temperature: float = 0.05
    main_weight: float = 0.99
    contrastive_weight: float = 0.01
    reg: Reg = "flops"
    lambda_q: float = 0.0
    reg_warmup_steps: int = 0
    anti_zero_weight: float = 0.0
    main: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.loss not in MAIN_LOSSES:
            raise ValueError(f"loss must be one of {list(MAIN_LOSSES)}, got {self.loss!r}")
        if self.reg not in ("none", *REGULARISERS):
            raise ValueError(f"reg must be none, l1 or flops, got {self.reg!r}")
        if self.reg == "none" and self.lambda_q != 0:
            raise ValueError("lambda_q > 0 needs reg='l1' or reg='flops'")
        cls = MAIN_LOSSES[self.loss]
        self.main = (cls(self.temperature) if cls is KLDistillation
                     else cls(self.info_nce_temperature) if cls is InfoNCE else cls())

    @property
    def needs_targets(self) -> bool:
        return self.main.needs_targets

    @classmethod
    def from_config(cls, cfg: Any, reg_warmup_steps: int) -> "DistillLoss":
        """From any object with the fields above (e.g. ``models.distill.DistillConfig``)."""
        names = [n for n, f in cls.__dataclass_fields__.items() if f.init and n != "reg_warmup_steps"]
        return cls(**{n: getattr(cfg, n) for n in names}, reg_warmup_steps=reg_warmup_steps)

    def terms(self, step: int) -> list[tuple[Any, float]]:
        """(loss, weight) of each term at optimizer step ``step`` (from 1), the main loss first."""
        out: list[tuple[Any, float]] = [(self.main, self.main_weight), (InBatchContrastive(), self.contrastive_weight)]
        if self.reg != "none":
            out.append((REGULARISERS[self.reg](), quadratic_warmup(self.lambda_q, step, self.reg_warmup_steps)))
        out.append((AntiZero(), self.anti_zero_weight))
        return out

    def __call__(
        self,
        query_reps: torch.Tensor,  # [B, V]
        doc_reps: torch.Tensor,  # [M, V]: the batch's distinct passages
        doc_index: torch.Tensor,  # [B, N] rows of doc_reps, positive first
        teacher: torch.Tensor,  # [B, N]
        step: int,  # the optimizer step being taken, from 1
        target_reps: torch.Tensor | None = None,  # [B, V] the teacher rewrites' vectors (loss "rep_mse")
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x = LossInputs(query_reps, doc_reps, doc_index, teacher, target_reps)
        terms = [(loss.name, weight, loss(x)) for loss, weight in self.terms(step)]
        parts: dict[str, float] = {}
        if self.reg != "none":
            parts["lambda_q"] = terms[2][1]
        total = sum((w * v for _, w, v in terms if w != 0), start=torch.zeros((), device=query_reps.device))
        parts.update({name: float(v.detach()) for name, _, v in terms})
        parts["total"] = float(total.detach())
        return total, parts
