"""The int8 screen of the vocabulary projection (models/screen.py): its bound holds, it never drops a positive term,
and the screened vectors are the plain SPLADE vectors bit for bit (real SPLADE-tiny weights)."""

from __future__ import annotations

import pytest
import torch

from models.projection import head_parts, max_logits
from models.screen import Int8Screen
from models.splade import SpladeEncoder
from tests.models.test_projection import TEXTS, WORDS, plain


@pytest.fixture(scope="module")
def encoder() -> SpladeEncoder:
    return SpladeEncoder("splade-tiny", frozen=True)


@pytest.fixture(scope="module")
def screen(encoder) -> Int8Screen:
    built = encoder.screen()
    if built is None:
        pytest.skip(f"no dynamic int8 linear on this machine (engine {torch.backends.quantized.engine})")
    return built


def test_int8_logits_within_the_bound_and_no_positive_term_dropped(encoder, screen):
    """States of every scale, with outlier dimensions: the exact logits are within the bound of the int8 ones,
    and every term whose exact max is positive is a candidate; far fewer candidates than terms."""
    _, decoder = head_parts(encoder.mlm)
    g = torch.Generator().manual_seed(7)
    kept = []
    with torch.inference_mode():
        for scale, outlier in ((0.5, 0.0), (2.0, 12.0), (4.0, -30.0), (1.0, 80.0)):
            states = torch.randn(40, screen.hidden, generator=g) * scale
            states[3, 17] = outlier or states[3, 17]
            exact = torch.nn.functional.linear(states, decoder.weight, decoder.bias)
            assert ((screen.logits(states) - exact).abs() <= screen.bound(states)).all()
            cand = set(screen.candidate_ids(states).tolist())  # one block of three texts
            best = torch.segment_reduce(exact, "max", lengths=torch.tensor([1, 9, 30]), axis=0)
            assert set(torch.nonzero(best > 0)[:, 1].tolist()) <= cand
            kept.append(len(cand))
    assert min(kept) < screen.vocab  # (random states are far from real ones: real queries keep about 1%)


@pytest.mark.slow  # 10-15 s each on a loaded 2-core machine; the fast suite checks queries below
@pytest.mark.parametrize("chunk,block", [(4096, 128), (1000, 7), (30522, 100_000)])
def test_screened_projection_bit_identical_to_plain(encoder, screen, chunk, block):
    batch = encoder.tokenize(TEXTS, 256)
    with torch.inference_mode():
        ref = plain(encoder.mlm, batch)
        fast = torch.log1p(torch.relu(max_logits(encoder.mlm, dict(batch), chunk=chunk, block=block, screen=screen)))
    assert torch.equal(fast, ref)
    assert (ref > 0).sum(1).min() > 0  # every text has terms to get right


@pytest.mark.parametrize("texts", [["who wrote 1984?"], [" ".join(WORDS[:30])], [TEXTS[12], "a", TEXTS[3]]])
def test_the_encoder_screens_queries_exactly(encoder, screen, texts):
    """``encode`` of a frozen encoder (the screened path) gives the plain vectors; a query keeps few candidates."""
    batch = encoder.tokenize(texts, 256)
    with torch.inference_mode():
        ref = plain(encoder.mlm, batch)
    for (ids, weights), row in zip(encoder.encode(texts, 256), ref):
        nz = torch.nonzero(row).squeeze(-1)
        assert torch.equal(torch.from_numpy(ids).long(), nz) and torch.equal(torch.from_numpy(weights), row[nz])
    states = head_parts(encoder.mlm)[0](encoder.mlm.base_model(**encoder.tokenize(texts[:1], 256)).last_hidden_state)
    assert len(screen.candidate_ids(states[0].detach())) < screen.vocab // 10


def test_only_a_frozen_encoder_screens_and_a_changed_weight_rebuilds_it():
    student = SpladeEncoder("splade-tiny")
    assert student.screen() is None  # its weights change at every step
    frozen = SpladeEncoder("splade-tiny", frozen=True)
    first = frozen.screen()
    if first is None:
        pytest.skip("no dynamic int8 linear on this machine")
    assert frozen.screen() is first  # built once
    decoder = head_parts(frozen.mlm)[1]
    with torch.no_grad():
        decoder.bias[5] += 100.0  # a term every text now has
    second = frozen.screen()
    assert second is not first
    with torch.inference_mode():
        vec = frozen.encode(["who wrote 1984?"], 64)[0]
    assert 5 in vec[0].tolist()
    frozen.screen_terms = False
    assert frozen.screen() is None


def test_bf16_states_take_the_plain_projection(encoder, screen):
    """Under CPU autocast the states are bf16: the screen (float32 kernels) steps aside and the plain chunked
    projection runs, as without a screen."""
    batch = encoder.tokenize(["who wrote 1984?", TEXTS[3]], 64)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        screened = max_logits(encoder.mlm, dict(batch), screen=screen)
        unscreened = max_logits(encoder.mlm, dict(batch))
    assert screened.dtype == torch.bfloat16 and torch.equal(screened, unscreened)


def test_a_screen_of_some_rows_gives_those_terms_exactly_and_zero_elsewhere(encoder, screen):
    """``pool(batch, terms)``: the weights of ``terms`` are the full vector's bit for bit, every other term is 0,
    and the screen built for ``terms`` never proposes another term (the rows the search service screens)."""
    texts = ["who wrote 1984?", TEXTS[3], " ".join(WORDS[:30])]
    batch = dict(encoder.tokenize(texts, 256))
    terms = torch.arange(0, encoder.vocab_size, 3)  # every third term
    with torch.inference_mode():
        whole = encoder.pool(batch)
        cut = encoder.pool(batch, terms)
        part = encoder.screen(terms)
        states = head_parts(encoder.mlm)[0](encoder.mlm.base_model(**batch).last_hidden_state)[0]
        cand = part.candidate_ids(states)
    keep = torch.zeros(encoder.vocab_size, dtype=torch.bool)
    keep[terms] = True
    assert torch.equal(cut[:, keep], whole[:, keep]) and not cut[:, ~keep].any()
    assert (whole[:, ~keep] > 0).any()  # something was cut
    assert keep[cand[cand > 0]].all() and encoder.screen(terms) is part and encoder.screen() is screen
    with pytest.raises(ValueError, match="inference"):
        encoder.pool(batch, terms)  # outside inference mode: a training path has no use for it


@pytest.mark.parametrize("every", [None, 3])
def test_sparse_vectors_are_the_pooled_non_zeros_bit_for_bit(encoder, screen, every):
    """``sparse(batch, terms)`` (the search service's query path, no [B, V] matrix): each text's ids and weights
    are exactly the non-zeros of ``pool(batch, terms)``, for batches of one to many texts, padded as the service
    pads them, and for a tiny batch (projected whole by the plain path)."""
    terms = None if every is None else torch.arange(0, encoder.vocab_size, every)
    many = [" ".join(WORDS[i:i + n]) for i, n in ((0, 5), (3, 40), (9, 17), (1, 120), (20, 2))]
    cases = [(["who wrote 1984?"], 16), (TEXTS[:3], 16), (many, 16), (many + TEXTS, None), (["a"], None)]
    with torch.inference_mode():
        for texts, multiple in cases:
            batch = dict(encoder.tokenizer(texts, padding=True, truncation=True, max_length=256,
                                           pad_to_multiple_of=multiple, return_tensors="pt"))
            dense = encoder.pool(batch, terms)
            got = encoder.sparse(batch, terms)
            assert len(got) == len(texts)
            for row, (ids, weights) in zip(dense, got):
                nz = torch.nonzero(row).squeeze(-1)
                assert ids.tolist() == nz.tolist() and len(ids) > 0
                assert weights.tobytes() == row[nz].numpy().tobytes()
    with pytest.raises(ValueError, match="inference"):
        encoder.sparse(batch, terms)
