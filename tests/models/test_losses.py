"""Loss values on small cases computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from models.losses import (
    DistillLoss,
    anti_zero,
    flops_reg,
    in_batch_contrastive,
    info_nce,
    kl_distillation,
    l1_reg,
    margin_mse,
    quadratic_warmup,
)

LN2 = math.log(2.0)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_kl_hand_computed():
    # teacher [log2, 0] -> p = (2/3, 1/3); student [0, 0] -> q = (1/2, 1/2)
    expected = 2 / 3 * math.log((2 / 3) / 0.5) + 1 / 3 * math.log((1 / 3) / 0.5)
    assert kl_distillation(t([[0.0, 0.0]]), t([[LN2, 0.0]])).item() == pytest.approx(expected, abs=1e-12)
    # batchmean: a second, identical-distribution row adds 0 and halves the mean
    both = kl_distillation(t([[0.0, 0.0], [5.0, 5.0]]), t([[LN2, 0.0], [1.0, 1.0]]))
    assert both.item() == pytest.approx(expected / 2, abs=1e-12)
    # direction is KL(teacher || student), not the reverse
    reverse = 0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3))
    assert reverse != pytest.approx(expected)
    # temperature divides both: T=2 on [2 log2, 0] equals T=1 on [log2, 0]
    assert kl_distillation(t([[0.0, 0.0]]), t([[2 * LN2, 0.0]]), temperature=2.0).item() == pytest.approx(expected)
    assert kl_distillation(t([[1.0, 3.0]]), t([[1.0, 3.0]])).item() == pytest.approx(0.0, abs=1e-12)


def test_in_batch_contrastive_hand_computed():
    q = t([[1.0, 0.0], [0.0, 1.0]])
    d = t([[LN2, 0.0], [0.0, 0.0], [0.0, 0.0]])  # scores q0: [log2, 0, 0]; q1: [0, 0, 0]
    loss = in_batch_contrastive(q, d, torch.tensor([0, 2]))
    # q0: -log(2/4); q1: -log(1/3)
    assert loss.item() == pytest.approx((math.log(2) + math.log(3)) / 2, abs=1e-12)


def test_margin_mse_and_info_nce():
    s, te = t([[3.0, 1.0, 2.0]]), t([[5.0, 1.0, 5.0]])
    # student margins (2, 1), teacher margins (4, 0): ((2-4)^2 + (1-0)^2) / 2
    assert margin_mse(s, te).item() == pytest.approx(2.5)
    # info_nce with T = 0.05 on [0.05 log2, 0]: -log(2/3)
    assert info_nce(t([[0.05 * LN2, 0.0]]), 0.05).item() == pytest.approx(math.log(1.5))


def test_regularisers_exact():
    reps = t([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    # FLOPS: mean |w| per term = (2, 0, 1) -> 4 + 0 + 1
    assert flops_reg(reps).item() == pytest.approx(5.0)
    # L1: row sums 3 and 3 -> mean 3
    assert l1_reg(reps).item() == pytest.approx(3.0)
    # anti-zero: 1/9 and 1/9 (eps negligible)
    assert anti_zero(reps).item() == pytest.approx(1 / 9, rel=1e-6)
    assert anti_zero(t([[1.0, 1.0], [0.5, 0.5]])).item() == pytest.approx((1 / 4 + 1) / 2, rel=1e-6)
    assert math.isfinite(anti_zero(t([[0.0, 0.0]]), eps=1e-8).item())


def test_quadratic_warmup_values():
    assert quadratic_warmup(0.5, 0, 10) == 0.0
    assert quadratic_warmup(0.5, 5, 10) == pytest.approx(0.125)
    assert quadratic_warmup(0.5, 10, 10) == pytest.approx(0.5)
    assert quadratic_warmup(0.5, 50, 10) == pytest.approx(0.5)
    assert quadratic_warmup(0.5, 1, 0) == 0.5


def _batch():
    q = torch.tensor([[1.0, 0.5, 0.0], [0.0, 2.0, 1.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    index = torch.tensor([[0, 1, 2], [2, 0, 1]])
    teacher = torch.tensor([[3.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    return q, d, index, teacher


@pytest.mark.parametrize("reg,fn", [("l1", l1_reg), ("flops", flops_reg)])
def test_distill_loss_honours_each_weight(reg, fn):
    q, d, index, teacher = _batch()
    student = (q @ d.T).gather(1, index)
    loss = DistillLoss(
        main_weight=0.7, contrastive_weight=0.2, reg=reg, lambda_q=0.3, reg_warmup_steps=4, anti_zero_weight=0.1
    )
    total, parts = loss(q, d, index, teacher, step=2)
    lam = 0.3 * (2 / 4) ** 2
    expected = (
        0.7 * kl_distillation(student, teacher)
        + 0.2 * in_batch_contrastive(q, d, index[:, 0])
        + lam * fn(q)
        + 0.1 * anti_zero(q)
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert parts["lambda_q"] == pytest.approx(lam)
    assert parts[reg] == pytest.approx(fn(q).item())
    assert parts["total"] == pytest.approx(total.item())
    assert set(parts) == {"kl", "contrastive", reg, "lambda_q", "anti_zero", "total"}


def test_distill_loss_main_term_choice_and_validation():
    q, d, index, teacher = _batch()
    student = (q @ d.T).gather(1, index)
    only_main = dict(main_weight=1.0, contrastive_weight=0.0, anti_zero_weight=0.0)
    total, parts = DistillLoss(loss="margin_mse", reg="none", **only_main)(q, d, index, teacher, step=1)
    assert total.item() == pytest.approx(margin_mse(student, teacher).item())
    assert "margin_mse" in parts and "lambda_q" not in parts
    total, _ = DistillLoss(loss="info_nce", **only_main)(q, d, index, teacher, 1)
    assert total.item() == pytest.approx(info_nce(student, 0.05).item())
    with pytest.raises(ValueError):
        DistillLoss(reg="none", lambda_q=0.1)
    q.requires_grad_(True)
    total, _ = DistillLoss()(q, d, index, teacher, step=1)
    total.backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_representation_mse_hand_computed_and_in_the_composition():
    from models.losses import representation_mse

    q, target = t([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]), t([[0.0, 0.0, 2.0], [1.0, 1.0, 0.0]])
    assert representation_mse(q, target).item() == pytest.approx((1.0 + 2.0) / 2)  # rows: 1, then 1 + 1
    loss = DistillLoss(loss="rep_mse", main_weight=1.0, contrastive_weight=0.0, reg="none", anti_zero_weight=0.0)
    docs = t([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    index = torch.tensor([[0, 1], [1, 0]])
    total, parts = loss(q, docs, index, t([[1.0, 0.0], [1.0, 0.0]]), step=1, target_reps=target)
    assert total.item() == pytest.approx(1.5) and parts["rep_mse"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="target_reps"):
        loss(q, docs, index, t([[1.0, 0.0], [1.0, 0.0]]), step=1)


def test_one_class_per_loss_named_as_the_config_names_it():
    from typing import get_args

    from models.distill_config import MainLoss, Reg
    from models.losses import MAIN_LOSSES, REGULARISERS, LossInputs, needs_targets

    assert set(MAIN_LOSSES) == set(get_args(MainLoss)) and set(REGULARISERS) | {"none"} == set(get_args(Reg))
    assert [n for n in MAIN_LOSSES if needs_targets(n)] == ["rep_mse"]
    q, d = t([[1.0, 0.0], [0.0, 2.0]]), t([[LN2, 0.0], [0.0, 1.0], [1.0, 1.0]])
    x = LossInputs(q, d, torch.tensor([[0, 2], [1, 0]]), t([[1.0, 0.0], [0.0, 0.0]]))
    assert x.student.tolist() == [[LN2, 1.0], [2.0, 0.0]]
    composed = DistillLoss(loss="margin_mse", main_weight=0.5, contrastive_weight=0.25, reg="l1", lambda_q=0.1,
                           anti_zero_weight=0.0)
    total, parts = composed(q, d, x.doc_index, x.teacher, step=1)
    by_hand = 0.5 * margin_mse(x.student, x.teacher) + 0.25 * in_batch_contrastive(q, d, x.doc_index[:, 0]) \
        + 0.1 * l1_reg(q)
    assert total.item() == pytest.approx(by_hand.item())
    assert [name for name, _ in [(loss.name, w) for loss, w in composed.terms(1)]] == [
        "margin_mse", "contrastive", "l1", "anti_zero"]
    with pytest.raises(ValueError, match="target_reps"):
        DistillLoss(loss="rep_mse")(q, d, x.doc_index, x.teacher, step=1)
