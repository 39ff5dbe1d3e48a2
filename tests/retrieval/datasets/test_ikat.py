"""The trec-ikat reader on the team-written iKAT 2023 fixture (public topic format) and malformed copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.datasets import get_reader
from core.errors import DataError

FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "ikat"
TOPICS = FIXTURE / "2023" / "data" / "2023_test_topics.json"


def test_fixture_turns():
    r = get_reader("trec-ikat", FIXTURE)
    assert r.year == "2023" and set(r.topics) == {"test"} and r.has_corpus
    turns = list(r.turns())
    assert [t.turn_id for t in turns] == ["4-1_1", "4-1_2", "4-1_3", "5-2_1", "5-2_2"]
    t = turns[1]
    assert (t.conversation_id, t.turn, t.split) == ("4-1", 2, "test")
    assert t.question == "How long does its battery last?"
    assert t.human_rewrite == "How long does the battery of an electric-assist hybrid bike last?"
    assert t.history == [
        ("user", "I want a bike for my commute. What kind should I get?"),
        ("agent", "For a 12 km hilly commute an electric-assist hybrid bike is a good fit, since the motor helps "
                  "on climbs."),
    ]  # fmt: skip
    assert t.answer.startswith("Most batteries give 40 to 80 km")
    assert r.ptkb()["5-2"] == ["I am allergic to wasps.", "I have two children."]


def test_fixture_qrels_and_passages():
    r = get_reader("trec-ikat", FIXTURE)
    provenance = [(q.turn_id, q.doc_id, q.relevance) for q in r.qrels()]
    assert len(provenance) == 5  # a passage cited twice counts once; turn 4-1_3 cites none
    assert ("4-1_2", "clueweb22-en0003-00-00003:1", 1) in provenance
    passages = list(r.passages())
    assert [p.doc_id for p in passages][0] == "clueweb22-en0001-00-00001:2"
    assert passages[0].text == "Electric-assist hybrids suit hilly commutes of 10 to 20 km."
    assert {d for _, d, _ in provenance} <= {p.doc_id for p in passages}

    graded = [(q.turn_id, q.relevance) for q in get_reader("trec-ikat", FIXTURE, qrels="2023_qrels.txt").qrels()]
    assert graded == [("4-1_1", 3), ("4-1_1", 1), ("4-1_2", 2), ("4-1_2", 0), ("5-2_2", 4)]
    assert list(get_reader("trec-ikat", FIXTURE, provenance_qrels=False).qrels()) == []


def _copy(tmp_path: Path, edit) -> Path:
    topics = json.loads(TOPICS.read_text())
    edit(topics)
    (tmp_path / "2023_test_topics.json").write_text(json.dumps(topics, indent=4))
    return tmp_path


def test_misspelled_fields(tmp_path):
    root = _copy(tmp_path, lambda t: t[1]["turns"][0].update(utterence=t[1]["turns"][0].pop("utterance")))
    with pytest.raises(DataError, match=r"missing field 'utterance'"):
        list(get_reader("trec-ikat", root).turns())
    root = _copy(tmp_path, lambda t: t[0]["turns"][0].update(
        resolved_utterence=t[0]["turns"][0].pop("resolved_utterance")))
    with pytest.raises(DataError, match=r"missing field 'resolved_utterance' \(found 'resolved_utterence'"):
        list(get_reader("trec-ikat", root, year=2023).turns())


def test_empty_utterance_names_the_turn(tmp_path):
    root = _copy(tmp_path, lambda t: t[1]["turns"][1].update(utterance=" "))
    with pytest.raises(DataError, match=r"record '5-2_2': empty utterance"):
        list(get_reader("trec-ikat", root).turns())


def test_no_topics(tmp_path):
    with pytest.raises(DataError, match="no known topics file"):
        get_reader("trec-ikat", tmp_path)
