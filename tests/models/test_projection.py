"""The chunked, unpadded vocabulary projection gives exactly the plain SPLADE vectors (real SPLADE-tiny weights),
and tokenizing with different truncation sides from several threads neither interleaves nor leaks state."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM, RobertaConfig, \
    RobertaForMaskedLM

from models.projection import head_parts, max_logits
from models.splade import SpladeEncoder

WORDS = ("the eiffel tower in paris was completed in 1889 for the world fair and photosynthesis converts light "
         "into chemical energy while the mona lisa hangs in the louvre ").split()
# lengths from 1 word to past the 256-token cut: blocks of several short texts, texts longer than a block
TEXTS = [" ".join(WORDS[(i * 7) % len(WORDS):] + WORDS * (i + 1))[: 3 + 97 * i] for i in range(20)] + ["?", "a"]


def plain(mlm, batch) -> torch.Tensor:
    """The textbook SPLADE-max on the full [B, L, V] logits (what the authors' code computes)."""
    logits = mlm(**batch).logits
    rep = torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)
    return rep.max(dim=1).values


@pytest.fixture(scope="module")
def encoder() -> SpladeEncoder:
    return SpladeEncoder("splade-tiny", frozen=True)


@pytest.fixture(scope="module")
def reference(encoder) -> torch.Tensor:
    with torch.inference_mode():
        return plain(encoder.mlm, encoder.tokenize(TEXTS, 256))


@pytest.mark.slow  # about 40 s on a loaded 2-core machine: make test-fast skips it
@pytest.mark.parametrize("chunk,block", [(4096, 128), (1000, 7), (30522, 100_000)])
def test_fast_path_bit_identical_to_plain(encoder, reference, chunk, block):
    batch = encoder.tokenize(TEXTS, 256)
    assert batch["attention_mask"].sum(1).max() == 256 and batch["attention_mask"].sum(1).min() <= 3
    ref = reference
    with torch.inference_mode():
        fast = torch.log1p(torch.relu(max_logits(encoder.mlm, dict(batch), chunk=chunk, block=block)))
    assert fast.shape == ref.shape == (len(TEXTS), 30522)
    assert torch.equal(fast, ref)  # bit for bit, every term of every text


@pytest.mark.parametrize("texts", [["?"], ["", "a"], ["mercury"], ["who wrote 1984?"], [TEXTS[9], "", "?", "a"],
                                   [" ".join(WORDS[:30])], [TEXTS[12]]])
def test_few_token_batches_bit_identical(encoder, texts):
    """BLAS sums differently for matrices of very few rows: tiny batches and tiny blocks must still match; a
    query-sized batch (up to WHOLE_VOCAB_TOKENS real tokens) is projected onto the whole vocabulary at once."""
    batch = encoder.tokenize(texts, 256)
    with torch.inference_mode():
        ref = plain(encoder.mlm, batch)
        fast = torch.log1p(torch.relu(max_logits(encoder.mlm, dict(batch), block=4)))
    assert torch.equal(fast, ref)


def test_encoder_uses_fast_path_and_matches_plain(encoder, reference):
    ref = reference
    vecs = encoder.encode(TEXTS, 256, batch_size=len(TEXTS))  # one batch: the same padding as `ref`
    for row, (ids, w) in zip(ref, vecs):
        nz = torch.nonzero(row).squeeze(-1)
        assert torch.equal(torch.from_numpy(ids).long(), nz) and torch.equal(torch.from_numpy(w), row[nz])


def test_other_heads():
    torch.manual_seed(0)
    ids = torch.randint(5, 90, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    small = dict(vocab_size=97, max_position_embeddings=32)
    bert = BertForMaskedLM(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32, **small)).eval()
    distil = DistilBertForMaskedLM(DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=32, **small)).eval()
    roberta = RobertaForMaskedLM(RobertaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=32, pad_token_id=1, **small)).eval()
    with torch.inference_mode():
        for mlm in (bert, distil):
            batch = {"input_ids": ids, "attention_mask": mask}
            ref = mlm(**batch).logits.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).max(1).values
            assert torch.equal(max_logits(mlm, batch, chunk=10, block=4), ref)
        assert head_parts(roberta) is None and max_logits(roberta, {"input_ids": ids, "attention_mask": mask}) is None


def test_tokenize_threads_do_not_interleave(encoder):
    long = " ".join(f"w{i}" for i in range(200))
    want = {side: encoder.tokenize([long, "short"], 16, side)["input_ids"] for side in ("left", "right")}
    assert not torch.equal(want["left"], want["right"])
    sides = ["left", "right"] * 200
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda s: (s, encoder.tokenize([long, "short"], 16, s)["input_ids"]), sides))
    assert all(torch.equal(ids, want[side]) for side, ids in got)
    assert encoder.tokenizer.truncation_side == "right"  # the shared tokenizer's own setting is left alone
