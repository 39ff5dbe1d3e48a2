"""The residual branch (models/branch.py): a deepened student starts exactly where SPLADE-tiny is, trains, and
its folder loads back with the branch."""

import pytest
import torch

from models.branch import BRANCH_FILE
from models.splade import SpladeEncoder

TEXTS = ["what is the boiling point of mercury [SEP] why was it used in thermometers?",
         "how long does it take to go around?", "and its moons"]


@pytest.fixture(scope="module")
def plain():
    return SpladeEncoder("splade-tiny", frozen=True)


@pytest.mark.parametrize("layers", [1, 2])
def test_untrained_deepened_student_gives_splade_tiny_vectors_exactly(plain, layers):
    deep = SpladeEncoder("splade-tiny", extra_layers=layers)
    assert deep.extra_layers == layers
    for a, b in zip(plain.encode(TEXTS, 64), deep.encode(TEXTS, 64)):  # the chunked inference path
        assert a[0].tolist() == b[0].tolist()
        assert a[1].tobytes() == b[1].tobytes()
    with torch.enable_grad():  # the differentiable training path, not the chunked one (eval mode: no dropout)
        got = deep(TEXTS, 64)
        want = SpladeEncoder("splade-tiny")(TEXTS, 64)
    assert got.requires_grad
    assert torch.equal(got, want)


def test_a_training_step_moves_the_branch_and_the_folder_loads_it_back(tmp_path, plain):
    deep = SpladeEncoder("splade-tiny", extra_layers=1).train()
    opt = torch.optim.AdamW(deep.parameters(), lr=1e-2)
    target = plain(TEXTS[:1], 64)[0].argmax()
    for _ in range(3):  # push one term's weight up: the zero projection must receive a gradient and move
        loss = -deep(TEXTS[:1], 64)[0, target]
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert deep.branch.out.weight.abs().sum() > 0
    moved = deep.encode(TEXTS, 64)
    assert any(a[1].tobytes() != b[1].tobytes() for a, b in zip(plain.encode(TEXTS, 64), moved))
    deep.save(tmp_path / "student")
    assert (tmp_path / "student" / BRANCH_FILE).is_file()
    again = SpladeEncoder(str(tmp_path / "student"), frozen=True)
    assert again.extra_layers == 1
    for a, b in zip(moved, again.encode(TEXTS, 64)):
        assert a[0].tolist() == b[0].tolist() and a[1].tobytes() == b[1].tobytes()
    with pytest.raises(ValueError, match="1 layers, not 2"):
        SpladeEncoder(str(tmp_path / "student"), extra_layers=2)
