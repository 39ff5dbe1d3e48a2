"""The exported model card says what the run did: the objective the configuration ran (score distillation by KL
for the demo, representation distillation only with ``distill.loss=rep_mse``), whom the student learned from,
and the input format in words (not a Python dict)."""

from __future__ import annotations

from stages.config import apply_overrides, preset
from disco.serving.card import model_card
from models.conversation import StudentInput
from models.student import StudentCard

METRICS = {"dataset": "disco", "split": "test", "turns": 65,
           "systems": {"last_turn": {"RR@10": 0.664, "nDCG@3": 0.6}, "disco": {"RR@10": 0.738, "nDCG@3": 0.7}}}
STATS = {"steps": 200, "examples": 118, "best_epoch": 3, "interpolation_alpha": 0.75}


def _card(overrides: list[str], card: StudentCard | None = None) -> str:
    cfg = apply_overrides(preset("demo"), overrides)
    card = card or StudentCard(input=cfg.distill.input, base_model=cfg.encoder.model, teacher=cfg.distill.learn_from)
    return model_card(card, cfg, STATS, METRICS, "disco-splade-demo")


def test_demo_card_describes_kl_score_distillation_from_the_human_rewrites():
    text = _card(["distill.learn_from=human"])  # the demo learns from the LLM since 2026-12-07; the human teacher here
    assert "rewrites' vectors" not in text and "representation distillation" not in text
    assert "**Objective**: score distillation: the KL divergence between the teacher's and the student's score " \
           "distributions" in text
    assert "in-batch contrastive, weight 0.1" in text
    assert "FLOPS sparsity of the query, lambda_q 0.01" in text  # the demo's weight, chosen on dev (issue 25)
    assert "**Teacher**: the dataset's human rewrites" in text
    assert "200 steps of AdamW (lr 0.0001, 8 turns a batch)" in text and "epoch 3" in text and "alpha 0.75" in text
    assert "| disco | 0.738 | 0.700 |" in text and "(disco test, 65 turns)" in text


def test_other_settings_change_the_card():
    text = _card(["distill.loss=rep_mse", "distill.learn_from=fused", "distill.lambda_q=0.01"])
    assert "representation distillation: the student's vector of the conversation pulled onto the teacher " \
           "rewrite's vector" in text and "KL" not in text
    assert "the fusion (mean_score) of the dataset's human rewrites, the rewrites of " in text  # teacher.fuse's
    assert "reference answer" not in text.split("**Teacher**")[1].split("\n")[0]
    assert "FLOPS sparsity of the query, lambda_q 0.01" in text
    assert "MarginMSE" in _card(["distill.loss=margin_mse"])
    assert "sparsity" not in _card(["distill.lambda_q=0"])


def test_settings_chosen_on_dev_are_on_the_card():
    cfg = apply_overrides(preset("demo"), [])
    stats = {**STATS, "chosen": {"input": "user turns only", "lambda_q": "0.03"},
             "chosen_settings": {"input": {"answers": False}, "lambda_q": 0.03}, "max_query_terms": 26.97,
             "last_turn_dev_terms": 22.47, "extra_layers": 1}
    text = model_card(StudentCard(input=StudentInput(answers=False)), cfg, stats, METRICS, "x")
    assert "chosen on the dev turns before training: input format user turns only, FLOPS weight 0.03" in text
    assert "FLOPS sparsity of the query, lambda_q 0.03" in text  # the chosen weight, not the configured 0.01
    assert "within 27.0 dev query terms kept (1.2x the last turn's 22.5)" in text
    assert "1 extra transformer layer(s) on a residual branch" in text


def test_input_format_in_words():
    card = StudentCard(input=StudentInput(answers=True, answer_max_words=20, history_turns=3), max_length=128)
    text = _card([], card)
    assert "{'" not in text and "'order'" not in text
    assert ("The conversation is one text: the current question first, then the earlier turns newest to oldest, "
            "joined by `[SEP]`; the agent's answers included (each cut to 20 words); the last 3 user turns kept; "
            "beyond 128 tokens the oldest turns are cut.") in text
    assert "and how long is it? [SEP] A tower in Paris. [SEP] what is the eiffel tower?" in text
