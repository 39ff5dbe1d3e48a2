"""transformers backend with the REAL packaged SmolLM2-135M (GGUF dequantised to fp32 on CPU)."""

from __future__ import annotations

import pytest

from models.rewrite.config import RewriteConfig
from models.rewrite.parse import postprocess
from models.rewrite.prompt import build_messages

pytestmark = pytest.mark.slow  # loads SmolLM2 and generates: about 2.5 minutes on a loaded machine


def _messages(turns, cfg):
    return [build_messages(t["question"], t["history"], cfg.max_history_chars, cfg.mode) for t in turns]


def test_rewrites_are_single_lines_and_batched_equals_unbatched(smollm, turns):
    cfg = RewriteConfig(max_new_tokens=24, batch_size=3)
    rw = smollm.with_config(cfg)
    msgs = _messages(turns[:3], cfg)
    out = rw.rewrite(msgs)  # one batch of 3 (+ one call per retried turn)
    assert len(out) == 3
    for text, attempts in out:
        assert isinstance(text, str) and text and text.strip() == text
        assert "\n" not in text
        assert attempts in (1, 2)
    assert rw.generate_calls == 1 + sum(n == 2 for _, n in out)
    # Greedy, left padding: each turn alone gives the batched output.
    single = [postprocess(rw.generate_raw([m])[0]) for m in msgs]
    assert [t for t, n in out if n == 1] == [s for s, (_, n) in zip(single, out) if n == 1]
    assert any(n == 1 for _, n in out)


def test_decodes_only_new_tokens(smollm, turns):
    cfg = RewriteConfig(max_new_tokens=8)
    raw = smollm.with_config(cfg).generate_raw(_messages(turns[:1], cfg))[0]
    assert "Conversation (most recent turn first)" not in raw and "You are a helpful" not in raw
    assert "<|im_start|>" not in raw and "<|im_end|>" not in raw


def test_retry_with_sampling_is_seeded_per_request(smollm, turns):
    """Each retried turn samples with its own seed (models/rewrite/retry.py, as the vLLM worker does): the same turn
    gets the same retry alone or in a batch, run after run."""
    # retry_min_words high enough that every output is retried once with sampling.
    cfg = RewriteConfig(max_new_tokens=6, retry_min_words=50, batch_size=2)
    rw = smollm.with_config(cfg)
    msgs = _messages(turns[:2], cfg)
    both = rw.rewrite(msgs)
    assert [n for _, n in both] == [2, 2]
    assert rw.generate_calls == 3  # one greedy pass + one sampled call per retried turn
    assert smollm.with_config(cfg).rewrite(msgs) == both  # same seeds: same samples
    assert [smollm.with_config(cfg).rewrite([m])[0] for m in msgs] == both  # alone as in the batch


def test_beam_search_is_used(smollm, turns):
    """num_beams=2 finds another first line than greedy decoding on this turn (the model and inputs are fixed, so
    the outputs are exact): ignoring num_beams would give greedy's."""
    greedy = RewriteConfig(max_new_tokens=12, retry_min_words=0)
    beams = RewriteConfig(max_new_tokens=12, num_beams=2, retry_min_words=0)
    msgs = _messages(turns[:1], greedy)
    assert smollm.with_config(greedy).rewrite(msgs) == [("The Mothers of Invention.", 1)]
    rw = smollm.with_config(beams)
    assert rw._gen_config(sample=False).num_beams == 2
    assert rw.rewrite(msgs) == [("When did Frank Zappa disband?", 1)]
