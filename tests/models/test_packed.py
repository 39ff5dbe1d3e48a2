"""models/packed.py: texts packed without padding give each text the same vector bit for bit alone or beside any
others, transformers' own states for a text alone, and the padded path's vectors up to attention's last bits
(real SPLADE-tiny weights)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from models import packed
from models.projection import MIN_ROWS
from models.splade import SpladeEncoder
from tests.models.test_lean_bert import _texts


@pytest.fixture(scope="module")
def encoder() -> SpladeEncoder:
    built = SpladeEncoder("splade-tiny", frozen=True)
    if built.screen() is None:
        pytest.skip(f"no dynamic int8 linear on this machine (engine {torch.backends.quantized.engine})")
    return built


@pytest.fixture(scope="module")
def deep() -> SpladeEncoder:
    """A student with a trained-looking residual branch (no longer the zero no-op)."""
    built = SpladeEncoder("splade-tiny", extra_layers=2, frozen=True)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in built.branch.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return built


def _rows(encoder: SpladeEncoder, texts: list[str]) -> dict[str, list[list[int]]]:
    return dict(encoder.tokenizer(texts, truncation=True, max_length=256))


def _same(a, b) -> bool:
    return a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


@pytest.mark.parametrize("which", ["plain", "branch"])
@pytest.mark.parametrize("seed", range(3))
def test_a_text_gets_the_same_vector_alone_and_in_any_batch(encoder, deep, which, seed):
    enc = encoder if which == "plain" else deep
    rng = random.Random(seed)
    texts = _texts(rng, 12) + ["a", "who wrote 1984?"]  # 3 and 7 tokens: fewer rows than MIN_ROWS alone
    terms = torch.arange(0, enc.vocab_size, 2) if seed == 1 else None
    rows = _rows(enc, texts)
    with torch.inference_mode():
        alone = [enc.sparse_packed([rows["input_ids"][i]], [rows["token_type_ids"][i]], terms)[0]
                 for i in range(len(texts))]
        for _ in range(3):
            pick = rng.sample(range(len(texts)), rng.randint(2, len(texts)))
            got = enc.sparse_packed([rows["input_ids"][i] for i in pick], [rows["token_type_ids"][i] for i in pick],
                                    terms)
            assert len(got) == len(pick)
            assert all(_same(g, alone[i]) for g, i in zip(got, pick))
    assert all(len(v[0]) for v in alone)
    if terms is not None:
        assert all(np.isin(v[0], terms.numpy()).all() for v in alone)


def test_a_text_alone_gets_transformers_unpadded_states(encoder):
    text = " ".join(_texts(random.Random(3), 1))
    rows = _rows(encoder, [text])
    assert len(rows["input_ids"][0]) >= MIN_ROWS
    p = packed.pack(rows["input_ids"], rows["token_type_ids"])
    assert p.lengths == [len(rows["input_ids"][0])] and p.texts == 1
    with torch.inference_mode():
        want = encoder.mlm.base_model(**{k: torch.tensor(v) for k, v in rows.items()}).last_hidden_state[0]
        assert torch.equal(packed.hidden_states(encoder.mlm, p), want)


def test_few_rows_get_a_filler_segment_that_is_dropped(encoder):
    p = packed.pack([[101, 1037, 102]], None, pad_id=0)
    assert p.lengths == [3, MIN_ROWS - 3] and p.texts == 1 and p.tokens == 3
    assert p.ids.tolist()[3:] == [0] * (MIN_ROWS - 3) and p.positions.tolist()[:4] == [0, 1, 2, 0]
    with pytest.raises(ValueError, match="at least one"):
        packed.pack([[101, 102], []])


@pytest.mark.parametrize("which", ["plain", "branch"])
def test_packed_vectors_are_the_padded_batch_vectors_up_to_attention_rounding(encoder, deep, which):
    """The same terms with weights within float rounding of ``sparse`` on a padded batch (which the evaluate
    stage's encoder runs)."""
    enc = encoder if which == "plain" else deep
    texts = _texts(random.Random(11), 10)
    rows = _rows(enc, texts)
    batch = dict(enc.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt"))
    with torch.inference_mode():
        got = enc.sparse_packed(rows["input_ids"], rows["token_type_ids"])
        want = enc.sparse(batch)
    for (ids, w), (ref_ids, ref_w) in zip(got, want):
        shared = np.intersect1d(ids, ref_ids)
        assert len(shared) >= 0.98 * max(len(ids), len(ref_ids))  # a term at the edge of 0 may cross it
        assert np.allclose(w[np.isin(ids, shared)], ref_w[np.isin(ref_ids, shared)], atol=1e-5)


def test_where_the_packed_path_does_not_apply_it_says_so(encoder):
    rows = _rows(encoder, ["a short question"])
    student = SpladeEncoder("splade-tiny")  # a student in training: no screen
    with torch.inference_mode():
        assert student.sparse_packed(rows["input_ids"]) is None
    with pytest.raises(ValueError, match="inference"):
        encoder.sparse_packed(rows["input_ids"])
