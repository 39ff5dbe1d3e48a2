"""transformers backend with the REAL packaged SmolLM2-135M (GGUF dequantised to fp32 on CPU)."""

from __future__ import annotations

from models.rewrite.prompt import RewriteConfig, build_messages, postprocess


def _messages(turns, cfg):
    return [build_messages(t["question"], t["history"], cfg.max_history_chars, cfg.mode) for t in turns]


def test_rewrites_are_single_lines_and_batched_equals_unbatched(smollm, turns):
    cfg = RewriteConfig(max_new_tokens=24, batch_size=3)
    rw = smollm.with_config(cfg)
    msgs = _messages(turns[:3], cfg)
    out = rw.rewrite(msgs)  # one batch of 3 (+ one retry batch at most)
    assert len(out) == 3
    for text, attempts in out:
        assert isinstance(text, str) and text and text.strip() == text
        assert "\n" not in text
        assert attempts in (1, 2)
    assert rw.generate_calls == (1 if all(n == 1 for _, n in out) else 2)
    # Greedy, left padding: each turn alone gives the batched output.
    single = [postprocess(rw.generate_raw([m])[0]) for m in msgs]
    assert [t for t, n in out if n == 1] == [s for s, (_, n) in zip(single, out) if n == 1]
    assert any(n == 1 for _, n in out)


def test_decodes_only_new_tokens(smollm, turns):
    cfg = RewriteConfig(max_new_tokens=8)
    raw = smollm.with_config(cfg).generate_raw(_messages(turns[:1], cfg))[0]
    assert "Conversation (most recent turn first)" not in raw and "You are a helpful" not in raw
    assert "<|im_start|>" not in raw and "<|im_end|>" not in raw


def test_retry_with_sampling_is_seeded(smollm, turns):
    # retry_min_words high enough that every output is retried once with sampling.
    cfg = RewriteConfig(max_new_tokens=6, retry_min_words=50, batch_size=2)
    rw = smollm.with_config(cfg)
    msgs = _messages(turns[:1], cfg)
    first = rw.rewrite(msgs)
    assert [n for _, n in first] == [2]
    assert rw.generate_calls == 2  # one greedy pass + one sampled retry pass
    again = smollm.with_config(cfg).rewrite(msgs)
    assert again == first  # same seed, same batch: same sample


def test_beam_search_runs(smollm, turns):
    cfg = RewriteConfig(max_new_tokens=6, num_beams=2, retry_min_words=0)
    out = smollm.with_config(cfg).rewrite(_messages(turns[:1], cfg))
    assert len(out) == 1 and "\n" not in out[0][0]
