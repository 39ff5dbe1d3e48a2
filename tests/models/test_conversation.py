"""Conversation formatting order, and truncation by the real SPLADE-tiny tokenizer."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from models.conversation import format_conversation
from models.weights import resolve

HISTORY = [
    ("user", "who wrote nineteen eighty-four?"),
    ("agent", "George Orwell wrote it in 1949."),
    ("user", "where was he born?"),
    ("agent", "He was born in Motihari, India."),
]


def test_order_newest_first_with_answers():
    text = format_conversation("when did he die?", HISTORY)
    assert text == (
        "when did he die? [SEP] He was born in Motihari, India. [SEP] where was he born? "
        "[SEP] George Orwell wrote it in 1949. [SEP] who wrote nineteen eighty-four?"
    )


def test_dict_history_as_read_from_parquet_and_edge_cases():
    as_dicts = [{"role": r, "text": x} for r, x in HISTORY]
    assert format_conversation("when did he die?", as_dicts) == format_conversation("when did he die?", HISTORY)
    assert format_conversation("first question?", []) == "first question?"
    assert format_conversation("first question?", None) == "first question?"
    # an unanswered turn leaves no empty slot
    assert format_conversation("q2", [("user", "q1"), ("agent", "")]) == "q2 [SEP] q1"
    assert format_conversation("q2", [("user", "q1")], sep="|") == "q2 | q1"
    with pytest.raises(ValueError):
        format_conversation("q", [("robot", "x")])


def test_truncation_cuts_the_oldest_turn():
    tok = AutoTokenizer.from_pretrained(resolve("splade-tiny").path)
    text = format_conversation("when did he die?", HISTORY)
    full = tok(text)["input_ids"]
    assert tok.convert_ids_to_tokens(full).count("[SEP]") == 5  # 4 separators + the final special token
    limit = len(full) - 4
    ids = tok(text, truncation=True, max_length=limit)["input_ids"]
    decoded = tok.decode(ids, skip_special_tokens=False)
    assert len(ids) == limit
    assert decoded.startswith("[CLS] when did he die? [SEP] he was born in motihari")
    assert "1949" in decoded  # newer turns intact
    assert "who wrote" in decoded and "four" not in decoded  # the oldest question is what got cut
    assert decoded.endswith("[SEP]")


def test_student_input_formats():
    from models.conversation import StudentInput

    q = "when did he die?"
    oldest = StudentInput(order="oldest_first")
    assert format_conversation(q, HISTORY, fmt=oldest) == (
        "who wrote nineteen eighty-four? [SEP] George Orwell wrote it in 1949. [SEP] where was he born? "
        "[SEP] He was born in Motihari, India. [SEP] when did he die?")
    assert format_conversation(q, HISTORY, fmt=StudentInput(answers=False)) == (
        "when did he die? [SEP] where was he born? [SEP] who wrote nineteen eighty-four?")
    assert format_conversation(q, HISTORY, fmt=StudentInput(answer_max_words=3)) == (
        "when did he die? [SEP] He was born [SEP] where was he born? [SEP] George Orwell wrote "
        "[SEP] who wrote nineteen eighty-four?")
    assert format_conversation(q, HISTORY, fmt=StudentInput(history_turns=1)) == (
        "when did he die? [SEP] He was born in Motihari, India. [SEP] where was he born?")
    assert format_conversation(q, HISTORY, fmt=StudentInput(history_turns=0)) == q
    assert format_conversation(q, HISTORY, fmt=StudentInput(history_turns=5)) == format_conversation(q, HISTORY)
    assert format_conversation(q, HISTORY, fmt=StudentInput(sep="|", answers=False)) == (
        "when did he die? | where was he born? | who wrote nineteen eighty-four?")
    # the tokenizer cuts the oldest end by default, whatever the order; "newest" is the opposite end
    assert StudentInput().truncation_side() == "right" and oldest.truncation_side() == "left"
    assert StudentInput(truncation="newest").truncation_side() == "left"
    assert StudentInput(order="oldest_first", truncation="newest").truncation_side() == "right"


def test_oldest_first_truncation_keeps_the_current_question():
    from models.conversation import StudentInput
    from models.splade import SpladeEncoder

    enc = SpladeEncoder("splade-tiny", frozen=True)
    fmt = StudentInput(order="oldest_first")
    text = format_conversation("when did he die?", HISTORY, fmt=fmt)
    ids = enc.tokenize([text], 12, fmt.truncation_side())["input_ids"][0]
    decoded = enc.tokenizer.decode(ids)
    assert decoded.startswith("[CLS]") and decoded.endswith("when did he die? [SEP]") and "orwell" not in decoded
