"""WiSE-FT interpolation of the student with its starting encoder (models/interpolation.py), alpha chosen on dev."""

from __future__ import annotations

import pytest
import torch

from models.interpolation import choose_interpolation, mix
from models.selection import Rule
from models.splade import SpladeEncoder


def _shifted(delta: float) -> SpladeEncoder:
    """The packaged SPLADE-tiny with every floating-point weight moved by ``delta``: a stand-in 'trained' student."""
    enc = SpladeEncoder("splade-tiny")
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(delta)
    return enc


def test_mix_is_exact_at_the_ends_and_linear_between():
    base = SpladeEncoder("splade-tiny").state_dict()
    tuned = _shifted(0.5).state_dict()
    assert all(torch.equal(mix(tuned, base, 1.0)[k], tuned[k]) for k in tuned)
    assert all(torch.equal(mix(tuned, base, 0.0)[k], base[k]) for k in tuned)
    half = mix(tuned, base, 0.5)
    floats = [k for k in tuned if tuned[k].is_floating_point()]
    assert floats and all(torch.allclose(half[k], base[k] + 0.25, atol=1e-6) for k in floats)
    assert all(torch.equal(half[k], tuned[k]) for k in tuned if not tuned[k].is_floating_point())
    with pytest.raises(ValueError, match="differ"):
        mix({"a": torch.zeros(1)}, base, 0.5)


def test_the_dev_best_alpha_is_kept_ties_to_the_trained_side():
    student = _shifted(0.01)
    tuned = {k: v.clone() for k, v in student.state_dict().items()}
    base = SpladeEncoder("splade-tiny").state_dict()
    key = next(k for k in tuned if tuned[k].is_floating_point())

    def score(s):  # a dev measure that peaks at alpha = 0.5: the distance to the midpoint of one tensor
        gap = (s.state_dict()[key] - (tuned[key] + base[key]) / 2).abs().mean().item()
        return {"RR@10": -gap}

    alpha, rows = choose_interpolation(student, "splade-tiny", [0.25, 0.5, 1.0], score, Rule("RR@10"))
    assert alpha == 0.5 and [r["alpha"] for r in rows] == [1.0, 0.5, 0.25]
    assert torch.equal(student.state_dict()[key], mix(tuned, base, 0.5)[key])
    # a flat dev measure keeps the trained student itself
    alpha, _ = choose_interpolation(student := _shifted(0.01), "splade-tiny", [0.5, 1.0], lambda s: {"RR@10": 0.0},
                                    Rule("RR@10"))
    assert alpha == 1.0 and torch.equal(student.state_dict()[key], tuned[key])
    with pytest.raises(ValueError, match="1.0"):
        choose_interpolation(student, "splade-tiny", [0.5], score, Rule("RR@10"))


def test_config_rejects_an_interpolation_without_the_trained_student():
    from models.distill_config import DistillConfig

    assert DistillConfig().interpolate == [1.0]
    with pytest.raises(ValueError, match="interpolate"):
        DistillConfig(interpolate=[0.5])
    with pytest.raises(ValueError, match="interpolate"):
        DistillConfig(interpolate=[1.0, 1.5])
