"""Weight-space interpolation of the trained student with the encoder it started from, the mix chosen on dev.

WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022): the weights
``alpha * tuned + (1 - alpha) * base`` of a fine-tuned model and its starting point often keep the fine-tuned
model's gains on its own data while holding more of the starting point's robustness elsewhere. Here the base is
the frozen SPLADE encoder the student was copied from (the document encoder), so ``alpha = 0`` is the untrained
student and ``alpha = 1`` the trained one. Each ``alpha`` of ``distill.interpolate`` is scored on the dev turns
(:mod:`models.selection`); the best is kept, ties going to the larger ``alpha`` (the trained side). The test split
never takes part.
"""

from __future__ import annotations

from typing import Callable

import torch

from models.selection import Rule
from models.splade import SpladeEncoder


def mix(tuned: dict[str, torch.Tensor], base: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """``alpha * tuned + (1 - alpha) * base`` for every floating-point tensor (others, e.g. position ids, as tuned)."""
    if tuned.keys() != base.keys():
        raise ValueError("the tuned and base encoders differ in their parameters: they cannot be interpolated")
    return {k: torch.lerp(base[k], v, alpha) if v.is_floating_point() else v for k, v in tuned.items()}


def choose_interpolation(student: SpladeEncoder, base_model: str, alphas: list[float],
                         score: Callable[[SpladeEncoder], dict[str, float]], rule: Rule) -> tuple[float, list[dict]]:
    """Set ``student`` to the dev-best interpolation with ``base_model`` (by ``rule``, ties to the larger alpha);
    return that alpha and one row per alpha (``{"alpha", **score(student)}``). ``alphas`` must contain 1.0 (the
    trained student itself). A student with a residual branch mixes with an untrained branch of the same depth
    (output projection zero: the base encoder's vectors)."""
    if 1.0 not in alphas:
        raise ValueError(f"distill.interpolate must include 1.0 (the trained student), got {alphas}")
    tuned = {k: v.detach().clone() for k, v in student.state_dict().items()}
    base = SpladeEncoder(base_model, extra_layers=student.extra_layers).state_dict()
    rows = []
    for alpha in sorted(set(alphas), reverse=True):
        student.load_state_dict(mix(tuned, base, alpha))
        rows.append({"alpha": alpha, **score(student)})
    best = rule.best(rows)  # rows from alpha 1.0 down: ties go to the larger alpha
    student.load_state_dict(mix(tuned, base, best["alpha"]))
    return best["alpha"], rows
