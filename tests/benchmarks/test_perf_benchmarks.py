"""The pure helpers of the issue-12 benchmarks (encode, retrieval_backends, query_path); the benchmarks themselves
run on demand (`make bench`), not here."""

from __future__ import annotations

import importlib

import numpy as np


def load(name: str):
    return importlib.import_module(f"benchmarks.{name}")


def test_compare_counts_identical_vectors_in_fp32_and_after_quantisation():
    encode = load("encode")
    ref = np.array([[0.0, 1.234, 2.0], [0.5, 0.0, 0.1]], dtype=np.float32)
    got = ref.copy()
    got[1, 2] = np.nextafter(np.float32(0.1), np.float32(1))  # one ulp: equal once quantised
    c = encode.compare(ref, got)
    assert c["identical_fp32"] == 0.5 and c["identical_quantised"] == 1.0 and c["max_quantised_diff"] == 0
    got[0, 1] = 1.3
    assert encode.compare(ref, got)["max_quantised_diff"] == 7


def test_useful_flops_are_dominated_by_the_vocabulary_projection():
    from transformers import BertConfig

    encode = load("encode")

    class Tiny:
        config = BertConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=2, vocab_size=30522)

    per_passage = encode.useful_gflop(Tiny, 215)
    assert 1.7 < per_passage < 1.9  # the "about 1.85 GFLOP per passage"
    assert 2 * 128 * 30522 * 215 / 1e9 / per_passage > 0.9


def test_synthesised_corpus_keeps_real_terms_and_agreement():
    rb = load("retrieval_backends")
    real = [(np.array([1, 5, 9], dtype=np.int32), np.array([1.0, 0.5, 2.0], dtype=np.float32)),
            (np.array([2, 5], dtype=np.int32), np.array([0.3, 0.7], dtype=np.float32))]
    docs = rb.synthesise(real, 7)
    assert len(docs) == 7
    for i, (t, w) in enumerate(docs):
        assert np.all(np.diff(t) > 0) and np.all(w > 0) and set(real[i % 2][0]) <= set(t.tolist())
    # made block by block (as the benchmark writes large corpora), the same vectors
    blocks = rb.synthesise(real, 7, start=0, stop=3) + rb.synthesise(real, 7, start=3, stop=7)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(docs, blocks))
    # Lucene's float32 sums (1.9999999 for 2) count as identical once rounded, as the stages store them
    want = {"a": [("p1", 3.0), ("p2", 2.0)], "b": [("p3", 0.99999994)]}
    got = {"a": [("p1", 3.0), ("p9", 2.0)], "b": [("p3", 1.0)]}
    assert rb.agreement(want, got, 2) == {"top10_identical": 0.5, "top2_identical": 0.5,
                                          "top2_identical_raw_scores": 0.0}


def test_query_path_conversations_have_the_asked_number_of_turns():
    qp = load("query_path")
    for n in (1, 5, 10):
        convs = qp.conversations(n, 4)
        assert len(convs) == 4 and all(len(h) == 2 * (n - 1) for _, h in convs)
