"""models/lean_bert.py: BERT's encoder without the module machinery gives transformers' states bit for bit, and
declines what it was not checked on."""

import random

import pytest
import torch

from models import lean_bert
from models.splade import SpladeEncoder

WORDS = ("what is the boiling point of mercury why was it used in thermometers how long does it take to go around "
         "and its moons the bank loan rate for a mortgage in 2021").split()


def _texts(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, 70))) for _ in range(n)]


@pytest.fixture(scope="module")
def encoder():
    return SpladeEncoder("splade-tiny", frozen=True)


@pytest.mark.parametrize("seed", range(4))
def test_states_equal_transformers_bit_for_bit(encoder, seed):
    rng = random.Random(seed)
    with torch.inference_mode():
        for batch_size, multiple in ((1, None), (1, 16), (2, 16), (3, 32), (8, 16), (16, None)):
            batch = dict(encoder.tokenizer(_texts(rng, batch_size), padding=True, pad_to_multiple_of=multiple,
                                           return_tensors="pt"))
            want = encoder.mlm.base_model(**batch).last_hidden_state
            assert torch.equal(lean_bert.hidden_states(encoder.mlm, batch), want)
            del batch["token_type_ids"]  # transformers' buffer of zeros then
            assert torch.equal(lean_bert.hidden_states(encoder.mlm, batch), want)


def test_unpadded_batches_take_no_mask(encoder):
    batch = encoder.tokenizer(["a b c", "d e f"], return_tensors="pt")
    assert lean_bert.padding_mask(batch["attention_mask"]) is None
    padded = encoder.tokenizer(["a b c", "d"], padding=True, return_tensors="pt")
    mask = lean_bert.padding_mask(padded["attention_mask"])
    assert mask.shape == (2, 1, 5, 5) and mask[1, 0, :, 3:].any().item() is False


def test_a_branch_runs_lean_at_inference_and_equals_its_training_path():
    deep = SpladeEncoder("splade-tiny", extra_layers=2, frozen=True)
    torch.manual_seed(0)
    with torch.no_grad():  # a trained-looking branch: no longer the zero no-op
        for p in deep.branch.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    batch = dict(deep.tokenize(_texts(random.Random(7), 5), 64))
    base = deep.mlm.base_model(**batch).last_hidden_state.detach()
    with torch.enable_grad():  # transformers' layers (the training path)
        want = deep.branch(base, batch["attention_mask"]).detach()
    with torch.inference_mode():
        got = deep.branch(base, batch["attention_mask"])
    assert torch.equal(got, want)


def test_encode_is_unchanged_by_the_lean_path(encoder, monkeypatch):
    texts = _texts(random.Random(3), 12)
    lean = encoder.encode(texts, 64, batch_size=5)
    monkeypatch.setattr(lean_bert, "hidden_states", lambda mlm, batch: None)  # transformers' forward instead
    plain = encoder.encode(texts, 64, batch_size=5)
    for (ia, wa), (ib, wb) in zip(lean, plain):
        assert ia.tolist() == ib.tolist() and wa.tobytes() == wb.tobytes()


def test_declines_what_it_was_not_checked_on(encoder):
    from transformers import AutoModelForMaskedLM

    from models.weights import resolve

    batch = dict(encoder.tokenizer(["a question"], return_tensors="pt"))
    assert lean_bert.supported(encoder.mlm)
    assert lean_bert.hidden_states(encoder.mlm, {**batch, "position_ids": torch.arange(4)[None]}) is None
    ref = resolve("splade-tiny")
    eager = AutoModelForMaskedLM.from_pretrained(ref.path, attn_implementation="eager", **ref.kwargs).eval()
    assert not lean_bert.supported(eager) and lean_bert.hidden_states(eager, batch) is None
    tanh = AutoModelForMaskedLM.from_pretrained(ref.path, hidden_act="gelu_new", **ref.kwargs).eval()
    assert not lean_bert.supported(tanh)
    assert not lean_bert.supported(tanh.train())
