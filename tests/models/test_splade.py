"""SPLADE encoder on the real SPLADE-tiny weights, quantisation and impact vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM

from models.splade import SpladeConfig, SpladeEncoder, impact_vector, quantise, quantise_sparse, vocab_tokens

SENTENCE = "The Eiffel Tower in Paris was completed in 1889 for the World's Fair."


@pytest.fixture(scope="module")
def encoder() -> SpladeEncoder:
    return SpladeEncoder("splade-tiny", frozen=True)


def test_config_defaults():
    cfg = SpladeConfig()
    assert (cfg.model, cfg.query_max_length, cfg.doc_max_length, cfg.quant_scale) == ("splade-tiny", 256, 256, 100)


def test_sparse_vector_led_by_own_words(encoder):
    (ids, w), = encoder.encode([SENTENCE], max_length=256)
    assert ids.dtype == np.int32 and w.dtype == np.float32
    assert np.all(np.diff(ids) > 0) and np.all(w > 0)
    assert 5 < len(ids) < 300  # sparse: a few dozen of 30,522 terms
    toks = vocab_tokens(encoder.tokenizer)
    top = {toks[i] for i in ids[np.argsort(-w)[:12]]}
    assert {"tower", "paris", "fair", "1889"} <= top


def test_forward_matches_definition_and_is_differentiable(encoder):
    batch = encoder.tokenize([SENTENCE, "short one"], 64)
    with torch.no_grad():
        logits = encoder.mlm(**batch).logits
        ref = (torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)).max(dim=1).values
        rep = encoder([SENTENCE, "short one"], 64)
    torch.testing.assert_close(rep, ref)
    student = SpladeEncoder("splade-tiny").train()
    student(["short one"], 16).sum().backward()
    assert student.mlm.bert.embeddings.word_embeddings.weight.grad is not None
    assert all(not p.requires_grad for p in encoder.parameters()) and not encoder.training


def test_encode_deterministic_order_independent_of_batching(encoder):
    texts = [SENTENCE, "who painted the mona lisa?", "photosynthesis converts light into chemical energy"]
    a = encoder.encode(texts, 256, batch_size=2)
    b = encoder.encode(texts, 256, batch_size=2)
    for (ia, wa), (ib, wb) in zip(a, b):
        assert np.array_equal(ia, ib) and np.array_equal(wa, wb)
    (ione, wone), = encoder.encode([texts[1]], 256)
    assert np.array_equal(ione, a[1][0]) and np.allclose(wone, a[1][1], atol=1e-5)


def test_save_load_round_trip(encoder, tmp_path):
    encoder.save(tmp_path / "enc")
    assert (tmp_path / "enc" / "model.safetensors").exists()
    AutoModelForMaskedLM.from_pretrained(str(tmp_path / "enc"))
    again = SpladeEncoder(str(tmp_path / "enc"), frozen=True)
    (i1, w1), = encoder.encode([SENTENCE], 256)
    (i2, w2), = again.encode([SENTENCE], 256)
    assert np.array_equal(i1, i2) and np.array_equal(w1, w2)


def test_quantise_rounding_zero_drop_positive_ints():
    w = np.array([0.004, 0.005, 0.0151, 1.234, 2.0], dtype=np.float32)
    q = quantise(w, 100)
    assert q.dtype == np.int32 and q.tolist() == [2, 123, 200]  # 0.4 and 0.5 round to 0 (half to even)
    ids, qq = quantise_sparse(np.array([7, 8, 9, 10, 11]), w, 100)
    assert ids.tolist() == [9, 10, 11] and qq.tolist() == [2, 123, 200]


def test_impact_vector_keeps_wordpieces_and_punctuation(encoder):
    toks = vocab_tokens(encoder.tokenizer)
    assert len(toks) == 30522 and toks[2075] == "##ing" and toks[1010] == "," and toks[0] == "[PAD]"
    vec = impact_vector(np.array([2075, 1010, 1996]), np.array([0.5, 1.006, 0.001]), toks, 100)
    assert vec == {"##ing": 50, ",": 101}
    assert all(isinstance(v, int) and v > 0 for v in vec.values())
