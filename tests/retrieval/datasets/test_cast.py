"""The trec-cast reader on the shared treccastweb files (2019, 2021, 2022) and on small 2020-style topics."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from retrieval.datasets import get_reader
from core.errors import DataError

CAST = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "trec_cast"


def _shared() -> Path:
    if not (CAST / "2019" / "data" / "evaluation" / "evaluation_topics_v1.0.json").exists():
        pytest.skip("shared TREC CAsT data not present")
    return CAST


@pytest.mark.shared_data
def test_2019_evaluation():
    r = get_reader("trec-cast", _shared(), year=2019)
    assert r.has_corpus is False
    turns = list(r.turns())
    assert len(turns) == 479 and len({t.conversation_id for t in turns}) == 50
    assert all(t.human_rewrite for t in turns)  # from the separate resolved TSV
    assert all(t.answer is None and t.split == "test" for t in turns)
    t = next(t for t in turns if t.turn_id == "31_4")
    assert (t.conversation_id, t.turn, t.question) == ("31", 4, "What are its symptoms? ")
    assert t.human_rewrite == "What are lung cancer's symptoms?"
    assert t.history == [("user", "What is throat cancer?"), ("user", "Is it treatable?"),
                         ("user", "Tell me about lung cancer.")]  # fmt: skip
    qrels = list(r.qrels())
    assert len(qrels) == 29350 and len({q.turn_id for q in qrels}) == 173
    assert Counter(q.relevance for q in qrels) == {0: 21230, 1: 2889, 2: 2157, 4: 1618, 3: 1456}
    assert (qrels[0].turn_id, qrels[0].doc_id) == ("31_1", "CAR_116d829c4c800c2fc70f11692fec5e8c7e975250")


@pytest.mark.shared_data
def test_2019_training():
    r = get_reader("trec-cast", _shared(), year=2019, training=True)
    turns = list(r.turns())
    assert len(turns) == 269 and sum(1 for t in turns if t.human_rewrite) == 23  # a small resolved sample
    assert len(list(r.qrels())) == 2399


@pytest.mark.shared_data
def test_2021():
    r = get_reader("trec-cast", _shared(), year="2021")
    turns = list(r.turns())
    assert len(turns) == 239 and len({t.conversation_id for t in turns}) == 26
    assert all(t.human_rewrite and t.answer for t in turns)  # manual rewrites, canonical passage as answer
    t = turns[1]
    assert t.turn_id == "106_2" and t.history[0][0] == "user" and t.history[1][0] == "agent"
    assert t.history[1][1].startswith("More research is needed. Types Breast cancer can be")
    qrels = list(r.qrels())
    assert len(qrels) == 19334 and len({q.turn_id for q in qrels}) == 158


@pytest.mark.shared_data
def test_2022_flattened_branches_read_once():
    r = get_reader("trec-cast", _shared(), year=2022)
    turns = list(r.turns())
    assert len(turns) == 205  # 284 listed across 50 flattened branches of 18 topics
    assert len({t.turn_id for t in turns}) == 205 and len({t.conversation_id for t in turns}) == 18
    assert sum(1 for t in turns if t.answer) == 199 and all(t.human_rewrite for t in turns)
    t = next(t for t in turns if t.turn_id == "132_2-3")
    assert t.turn == 4 and len(t.history) == 6
    assert list(r.qrels()) == []  # 2022 qrels are not in the repository


@pytest.mark.shared_data
def test_year_needed_when_several_are_present():
    with pytest.raises(DataError, match="give the CAsT `year` option"):
        get_reader("trec-cast", _shared())


# -- small topics in the 2020 / 2022 shapes ------------------------------------------------------------------
def _topics_2020(tmp_path: Path, utterance: str = "Is it safe?") -> Path:
    topics = [{"number": 81, "turn": [
        {"number": 1, "raw_utterance": "How do sea anemones eat?",
         "manual_rewritten_utterance": "How do sea anemones eat?",
         "automatic_rewritten_utterance": "How do sea anemones eat?", "canonical_result_id": "MARCO_1"},
        {"number": 2, "raw_utterance": utterance,
         "manual_rewritten_utterance": "Is it safe to touch a sea anemone?",
         "automatic_rewritten_utterance": "Is it safe?", "canonical_result_id": "MARCO_2"},
    ]}]  # fmt: skip
    (tmp_path / "2020").mkdir()
    (tmp_path / "2020" / "2020_manual_evaluation_topics_v1.0.json").write_text(json.dumps(topics, indent=2))
    (tmp_path / "2020" / "2020qrels.txt").write_text("81_1 0 MARCO_1-3 2\n81_2 Q0 MARCO_2-0 0\n")
    return tmp_path


def test_2020_shape(tmp_path):
    r = get_reader("trec-cast", _topics_2020(tmp_path))  # the only year present
    turns = list(r.turns())
    assert [t.turn_id for t in turns] == ["81_1", "81_2"]
    assert turns[1].human_rewrite == "Is it safe to touch a sea anemone?"
    assert turns[1].history == [("user", "How do sea anemones eat?")] and turns[1].answer is None
    qrels = [(q.turn_id, q.doc_id, q.relevance) for q in r.qrels()]
    assert qrels == [("81_1", "MARCO_1-3", 2), ("81_2", "MARCO_2-0", 0)]


def test_empty_utterance_names_the_turn(tmp_path):
    with pytest.raises(DataError, match=r"topics_v1.0.json, line 2, record '81_2': empty utterance"):
        list(get_reader("trec-cast", _topics_2020(tmp_path, utterance=""), year=2020).turns())


def test_bad_qrels_line(tmp_path):
    root = _topics_2020(tmp_path)
    (root / "2020" / "2020qrels.txt").write_text("81_1 0 MARCO_1-3 2\n81_2 MARCO_2-0 0\n")
    with pytest.raises(DataError, match=r"2020qrels.txt, line 2: expected 4 fields, found 3"):
        list(get_reader("trec-cast", root, year=2020).qrels())


def test_2022_repeated_turn_must_agree(tmp_path):
    turn = {"number": "1-1", "utterance": "What is COP26?", "manual_rewritten_utterance": "What is COP26?",
            "response": "A climate summit.", "provenance": []}  # fmt: skip
    changed = dict(turn, utterance="What was COP26?")
    topics = [{"number": 7, "turn": [turn]}, {"number": 7, "turn": [changed]}]
    (tmp_path / "t.json").write_text(json.dumps(topics))
    with pytest.raises(DataError, match=r"record '7_1-1': turn 7_1-1 repeats \(first on line 1\)"):
        list(get_reader("trec-cast", tmp_path, year=2022, topics="t.json").turns())
    same_but_other_response = dict(turn, response="A UN conference.")
    (tmp_path / "t.json").write_text(json.dumps([{"number": 7, "turn": [turn]},
                                                 {"number": 7, "turn": [same_but_other_response]}]))  # fmt: skip
    turns = list(get_reader("trec-cast", tmp_path, year=2022, topics="t.json").turns())
    assert len(turns) == 1 and turns[0].answer == "A climate summit."
