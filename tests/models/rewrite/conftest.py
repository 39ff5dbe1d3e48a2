"""Shared fixtures of the rewriter tests: one real SmolLM2-135M (packaged GGUF) per test session."""

from __future__ import annotations

import pytest

TURNS = [
    {
        "turn_id": "zappa_2",
        "question": "When did they disband?",
        "history": [("user", "What group did Frank Zappa found?"), ("agent", "The Mothers of Invention.")],
    },
    {
        "turn_id": "paris_2",
        "question": "How tall is it?",
        "history": [{"role": "user", "text": "What is the Eiffel Tower?"},
                    {"role": "agent", "text": "A wrought-iron tower in Paris, France."}],
    },
    {"turn_id": "python_1", "question": "Who created the Python programming language?", "history": []},
    {
        "turn_id": "moon_3",
        "question": "Who was the second one?",
        "history": [("user", "Who was the first man on the moon?"), ("agent", "Neil Armstrong, in 1969."),
                    ("user", "Which mission was it?"), ("agent", "Apollo 11.")],
    },
    {
        "turn_id": "tea_2",
        "question": "Where does it grow?",
        "history": [("user", "What is matcha?"), ("agent", "A powdered green tea.")],
    },
    {
        "turn_id": "curie_2",
        "question": "What did she discover?",
        "history": [("user", "Who was Marie Curie?"), ("agent", "A physicist and chemist.")],
    },
]


@pytest.fixture(scope="session")
def smollm():
    """An HFRewriter holding the packaged SmolLM2-135M (loaded once: ~15 s on 2 cores)."""
    from models.rewrite.hf import HFRewriter
    from models.rewrite.config import RewriteConfig

    return HFRewriter(RewriteConfig(max_new_tokens=24))


@pytest.fixture
def turns():
    """Six short conversational turns (fresh copies)."""
    import copy

    return copy.deepcopy(TURNS)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tests check outputs, not speed: one torch thread keeps them fast on a busy 2-core machine
    (with 2 threads, OpenMP's spin-waiting made a 24-token generation 12x slower when another process
    held a core). Restored after each test, so tests elsewhere are unaffected."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
