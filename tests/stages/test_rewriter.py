"""The rewriter stage: nothing to make when no LLM teacher needs it; the packaged adapter refuses a prompt it was not
trained on; the configuration refuses a rewriter that is switched off; public data slices never mix."""

from __future__ import annotations

import json

import pytest

from core.errors import DiscoError
from stages.base import read_fields, run_stage
from stages.config import apply_overrides, preset
from stages.rewriter import PACKAGED, STAGE


def test_nothing_is_made_when_no_llm_teacher_is_computed(tmp_path):
    cfg = apply_overrides(preset("demo"), ['teacher.systems=["human"]', "distill.learn_from=human"])
    assert not cfg.rewriter_needed
    m = run_stage(STAGE, read_fields(STAGE, cfg), {"ingest": []}, tmp_path)
    assert m.stats["used"] is False and json.loads(m["card"].read_text())["used"] is False
    assert [p.name for p in m["model"].iterdir()] == ["README.txt"]


def test_the_demo_needs_the_packaged_rewriter():
    cfg = preset("demo")
    assert cfg.rewriter_needed and cfg.rewriter.mode == "packaged" and cfg.rewrite.model == "rewriter"
    assert cfg.models() == {"encoder.model": "splade-tiny", "rewriter.base": "smollm2-135m-instruct"}


def test_a_rewriter_switched_off_is_refused_by_the_configuration():
    with pytest.raises(DiscoError, match="rewriter.mode is 'off'"):
        apply_overrides(preset("demo"), ["rewriter.mode=off"])


def test_the_packaged_adapter_refuses_a_prompt_it_was_not_trained_on(tmp_path):
    if not (PACKAGED / "adapter_config.json").exists():
        pytest.fail(f"{PACKAGED}: the packaged adapter is missing")
    cfg = apply_overrides(preset("demo"), ["rewrite.prompt=instruction"])
    with pytest.raises(DiscoError, match="trained on the 'compact' prompt"):
        run_stage(STAGE, read_fields(STAGE, cfg), {"ingest": []}, tmp_path)
    # and before the run starts (`disco run` and the pipeline flow call check_models first), without torch
    with pytest.raises(DiscoError, match="trained on the 'compact' prompt, but rewriting would use 'instruction'"):
        cfg.check_models()
    preset("demo").check_models()  # the preset's own prompt passes
    apply_overrides(preset("demo"), ['teacher.systems=["human"]', "distill.learn_from=human",
                                     "rewrite.prompt=instruction"]).check_models()  # no LLM teacher: not checked


def test_the_packaged_card_says_how_it_was_made():
    card = json.loads((PACKAGED / "disco_rewriter.json").read_text())
    made = card["packaged_from"]
    assert made["command"].startswith("disco run demo --stage rewriter") and len(made["code"]) == 40
    assert card["rewrite"] == {k: getattr(preset("demo").rewrite, k) for k in ("prompt", "max_history_chars")}
    assert set(card["data"]) == set(card["config"]["sources"]) - {"own"}
    assert card["best_step"] > 0 and card["dev_f1"] > card["history"][0]["dev_f1"]  # step 0: the utterance
    from core.io import sha256_path

    assert sha256_path(PACKAGED / "adapter_model.safetensors") == made["adapter_sha256"]


@pytest.mark.shared_data
def test_canard_held_out_dev_and_train_never_share_a_conversation():
    from models.rewriter.config import RewriterConfig
    from retrieval.rewrite_eval import known_datasets, load_turns, slice_turns
    from retrieval.rewriter_data import canard_slices

    if not known_datasets()["canard-dev"][1].exists():
        pytest.skip("../shared/data/canard is absent")
    cfg = RewriterConfig(canard_holdout_turns=700, dev_turns=96)
    held, dev, train = canard_slices(cfg)
    convs = [set(df["conversation_id"]) for df in (held, dev, train)]
    assert not (convs[0] & convs[1]) and not (convs[0] & convs[2]) and not (convs[1] & convs[2])
    assert 700 <= len(held) < 720 and 96 <= len(dev) < 116 and len(held) + len(dev) + len(train) == 3430
    # `disco rewrite-eval canard-dev --limit 700` reports on exactly the held-out conversations
    fmt, path, options = known_datasets()["canard-dev"]
    assert set(slice_turns(load_turns(fmt, path, **options), 0, 700)["conversation_id"]) == convs[0]


def test_cast2021_is_never_training_data():
    from pydantic import ValidationError

    from models.rewriter.config import RewriterConfig

    with pytest.raises(ValidationError):
        RewriterConfig(sources=["canard", "cast2021"])


def test_own_rewrites_come_from_train_turns_only():
    import polars as pl

    from models.rewrite.config import RewriteConfig
    from models.rewriter.config import RewriterConfig
    from retrieval.rewriter_data import build

    turns = pl.DataFrame({"turn_id": ["a_1", "a_2", "b_1", "c_1"], "question": ["q1", "q2", "q3", "q4"],
                          "history": [[], [{"role": "user", "text": "q1"}], [], []],
                          "human_rewrite": ["r1", "r2", "r3", None], "split": ["train", "train", "test", "train"]})
    train, dev, counts = build(RewriterConfig(sources=["own"]), RewriteConfig(prompt="compact"), [turns])
    assert [e.id for e in train] == ["own0:a_1", "own0:a_2"] and dev == [] and counts == {"own": 2}
    assert train[1].target == "r2" and "user: q1" in train[1].messages[-1]["content"]
