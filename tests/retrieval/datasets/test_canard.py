"""The canard reader on the shared CANARD dev file and on malformed copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.datasets import get_reader
from core.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


@pytest.mark.shared_data
def test_shared_dev():
    root = SHARED / "canard"
    if not (root / "dev.json").exists():
        pytest.skip("shared CANARD data not present")
    r = get_reader("canard", root)
    assert r.has_corpus is False and set(r.files) == {"dev"}
    turns = list(r.turns())
    assert len(turns) == 3430 and len({t.conversation_id for t in turns}) == 490
    assert all(t.human_rewrite for t in turns) and {t.split for t in turns} == {"dev"}
    assert sum(1 for t in turns if t.answer) == 3430 - 490  # the last question of each dialog has no answer
    t = turns[1]
    assert t.turn_id == "C_2d211835213b45588ad5ca868ce7fabd_0_2" and t.turn == 2
    assert t.question == "When did they disband?"
    assert t.human_rewrite == "When did Zappa and the Mothers of Invention disband?"
    assert t.history == [("user", "What group disbanded?"), ("agent", "Zappa and the Mothers of Invention")]
    assert t.answer == "In late 1969, Zappa broke up the band."  # from the next question's History
    assert list(r.qrels()) == [] and list(r.passages()) == []

    first = next(iter(get_reader("canard", root, topic_in_history=True).turns()))
    assert first.history == [("user", "Frank Zappa: Disbandment")]


def _rec(no: int, question: str = "Where did she study?", history: list[str] | None = None, **extra) -> dict:
    if history is None:
        history = ["Ada Lovelace", "Early life"] + ["q", "a"] * (no - 1)
    rec = {"History": history, "QuAC_dialog_id": "C_1", "Question_no": no, "Question": question,
           "Rewrite": "Where did Ada Lovelace study?"}  # fmt: skip
    rec.update(extra)
    return rec


def test_small_file(tmp_path):
    (tmp_path / "train.json").write_text(json.dumps([_rec(1), _rec(2, history=["T", "S", "Q1", "A1"])]))
    turns = list(get_reader("canard", tmp_path).turns())
    assert [t.turn_id for t in turns] == ["C_1_1", "C_1_2"]
    assert turns[0].answer == "A1" and turns[1].answer is None and turns[1].split == "train"


def test_odd_history_names_the_record(tmp_path):
    (tmp_path / "dev.json").write_text(json.dumps([_rec(1), _rec(2, history=["T", "S", "Q1"])]))
    with pytest.raises(DataError, match=r"record 'C_1_2': History has 3 entries"):
        list(get_reader("canard", tmp_path).turns())


def test_misspelled_rewrite(tmp_path):
    rec = _rec(1)
    rec["rewrite"] = rec.pop("Rewrite")
    (tmp_path / "dev.json").write_text(json.dumps([rec]))
    with pytest.raises(DataError, match=r"missing field 'Rewrite' \(found 'rewrite'"):
        list(get_reader("canard", tmp_path).turns())


def test_empty_question(tmp_path):
    (tmp_path / "dev.json").write_text(json.dumps([_rec(1, question=" ")]))
    with pytest.raises(DataError, match=r"dev.json, line 1, record 'C_1_1': empty question"):
        list(get_reader("canard", tmp_path).turns())


def test_bad_utf8(tmp_path):
    (tmp_path / "dev.json").write_bytes(b'[\n{"History": ["T", "S"],\n "Question": "caf\xe9"}]')
    with pytest.raises(DataError, match=r"dev.json, line 3: not valid UTF-8"):
        list(get_reader("canard", tmp_path).turns())


def test_answer_passages_make_each_answer_span_its_turns_positive(tmp_path):
    """``answer_passages``: the answer span of question n (from question n + 1's History) is a passage titled with
    the article and section, and question n's only qrel; the last question (no answer) and a CANNOTANSWER have none."""
    records = [
        _rec(1, history=["Ada Lovelace", "Early life"]),
        _rec(2, history=["Ada Lovelace", "Early life", "Q1", "She was taught by tutors."]),
        _rec(3, history=["Ada Lovelace", "Early life", "Q1", "She was taught by tutors.", "Q2", "CANNOTANSWER"]),
        _rec(4, history=["Ada Lovelace", "Early life", "Q1", "A1", "Q2", "CANNOTANSWER", "Q3", " Mathematics. "]),
    ]
    (tmp_path / "train.json").write_text(json.dumps(records))
    r = get_reader("canard", tmp_path, answer_passages=True)
    assert r.has_corpus is True and get_reader("canard", tmp_path).has_corpus is False
    passages = list(r.passages())
    assert [(p.doc_id, p.title, p.text) for p in passages] == [
        ("C_1_1", "Ada Lovelace: Early life", "She was taught by tutors."),
        ("C_1_3", "Ada Lovelace: Early life", "Mathematics."),
    ]
    assert [(q.turn_id, q.doc_id, q.relevance) for q in r.qrels()] == [("C_1_1", "C_1_1", 1), ("C_1_3", "C_1_3", 1)]
    assert passages[0].where == (str(tmp_path / "train.json"), 1)
    assert [t.turn_id for t in r.turns()] == ["C_1_1", "C_1_2", "C_1_3", "C_1_4"]  # the turns do not change
