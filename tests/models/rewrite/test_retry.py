"""The one retry policy both backends follow (models/rewrite/retry.py): which outputs are retried, with which seed,
and which output is kept. The transformers backend runs it on a real model in test_hf.py."""

from __future__ import annotations

from models.rewrite.config import RewriteConfig
from models.rewrite.prompt import build_messages, input_hash
from models.rewrite.retry import retry_seed, with_retries


def test_retry_seed_is_per_request_stable_distinct_and_31_bits():
    assert retry_seed(0, "h1") == retry_seed(0, "h1")
    assert len({retry_seed(0, "h1"), retry_seed(0, "h2"), retry_seed(1, "h1")}) == 3
    assert all(0 <= retry_seed(s, h) < 2**31 for s in range(20) for h in ("a", "b", "c"))


def test_only_short_outputs_are_retried_each_with_its_own_seed_and_the_better_one_is_kept():
    cfg = RewriteConfig(retry_min_words=3, seed=7)
    messages = [build_messages(q, [("user", "Who wrote Dracula?")]) for q in ("Where was he born?", "When?", "Why?")]
    hashes = [input_hash(m) for m in messages]
    raws = ["Where was Bram Stoker born?", "When", ""]  # the first passes, the other two are too short
    asked = []

    def sample(indices, seeds):
        asked.append((indices, seeds))
        return ["When did Bram Stoker write Dracula?", "Why"]  # the retry of 1 passes; the one of 2 is longer: kept

    out = with_retries(raws, hashes, cfg, sample)
    assert asked == [([1, 2], [retry_seed(7, hashes[1]), retry_seed(7, hashes[2])])]
    assert [(r.text, r.attempts, r.raw_retry) for r in out] == [
        ("Where was Bram Stoker born?", 1, None), ("When did Bram Stoker write Dracula?", 2,
                                                  "When did Bram Stoker write Dracula?"), ("Why", 2, "Why")]
    assert with_retries(["one two three"], ["h"], cfg, lambda i, s: 1 / 0)[0].attempts == 1  # nothing sampled


def test_a_failed_retry_keeps_the_first_output_when_it_is_not_shorter():
    cfg = RewriteConfig(retry_min_words=5)
    out = with_retries(["Where was he born"], ["h"], cfg, lambda i, s: ["Born"])
    assert (out[0].text, out[0].attempts) == ("Where was he born", 2)
