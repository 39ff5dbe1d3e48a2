"""The rewriter's batches: left padding puts every target at the end of its row, positions follow the mask, the
loss reads the target tokens only, and the batch plan is deterministic and covers the data (no model needed)."""

from __future__ import annotations

import torch

from models.rewriter.train import batches, collate


def test_collate_left_pads_and_points_at_the_targets():
    pairs = [([5, 6, 7], [8, 9]), ([1], [2, 3, 4])]
    b = collate(pairs, pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9], [0, 1, 2, 3, 4]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 0, 1, 2, 3]]
    # each target token is predicted from the position just before it
    got = [(r, c, y) for r, c, y in zip(b["rows"].tolist(), b["cols"].tolist(), b["labels"].tolist())]
    assert got == [(0, 2, 8), (0, 3, 9), (1, 1, 2), (1, 2, 3), (1, 3, 4)]
    for r, c, y in got:
        assert b["input_ids"][r, c + 1] == y and b["attention_mask"][r, c] == 1


def test_batches_are_deterministic_sorted_and_cover_every_example():
    lengths = [(i * 37) % 101 for i in range(100)]
    plan = batches(lengths, 8, 13, seed=3)
    assert plan == batches(lengths, 8, 13, seed=3) and plan != batches(lengths, 8, 13, seed=4)
    assert len(plan) == 13 and all(1 <= len(b) <= 8 for b in plan)
    first_epoch = [i for b in plan[:13] for i in b]
    assert len(set(first_epoch)) == len(first_epoch) == 100  # 13 batches: one epoch of 100 (12 x 8 + 4)
    # length-sorted within windows: a batch spans far less than the whole range of lengths
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plan) / len(plan)
    assert spread < 20


def test_batches_run_into_further_epochs():
    plan = batches([1, 2, 3], 2, 5, seed=0)
    assert len(plan) == 5 and sorted(i for b in plan[:2] for i in b) == [0, 1, 2]

