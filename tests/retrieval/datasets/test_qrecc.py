"""The qrecc reader on the team-written fixture (public QReCC layout) and on malformed copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retrieval.datasets import get_reader
from core.errors import DataError

FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "qrecc"


def test_fixture():
    r = get_reader("qrecc", FIXTURE)
    assert r.has_corpus
    turns = list(r.turns())
    assert [(t.split, t.turn_id) for t in turns] == [
        ("train", "train-1_1"), ("train", "train-1_2"), ("train", "train-1_3"), ("train", "train-2_1"),
        ("test", "test-3_1"), ("test", "test-3_2"),
    ]  # fmt: skip
    assert turns[4].conversation_id == "test-3"
    t = turns[2]
    assert t.question == "Can you live on one?" and t.human_rewrite == "Can you live on a narrowboat?"
    assert t.history == [
        ("user", "What is a narrowboat?"),
        ("agent", "A narrowboat is a long, slim boat built to fit the narrow locks of British canals."),
        ("user", "How wide are they?"),
        ("agent", "Usually just under seven feet."),
    ]
    assert t.answer is None  # an empty answer
    assert t.where == (str(FIXTURE / "qrecc_train.json"), 27)
    qrels = [(q.turn_id, q.doc_id) for q in r.qrels()]
    assert len(qrels) == 6 and ("train-1_2", "http://locks.example.net/sizes_p2") in qrels
    assert not any(tid == "train-1_3" for tid, _ in qrels)  # no truth passages: no qrels, still a turn
    passages = list(r.passages())
    assert len(passages) == 6  # the collection folder is read recursively
    assert {q[1] for q in qrels} <= {p.doc_id for p in passages}


def test_without_collection(tmp_path):
    shutil.copy(FIXTURE / "qrecc_test.json", tmp_path / "qrecc_test.json")
    r = get_reader("qrecc", tmp_path)
    assert r.has_corpus is False and list(r.passages()) == []
    assert [t.split for t in r.turns()] == ["test", "test"]
    assert [t.turn_id for t in get_reader("qrecc", tmp_path, split_prefix=False).turns()] == ["3_1", "3_2"]


def _write(tmp_path: Path, records) -> Path:
    text = records if isinstance(records, str) else json.dumps(records, indent=1)
    (tmp_path / "qrecc_train.json").write_text(text)
    return tmp_path


def _rec(**extra) -> dict:
    rec = {"Context": [], "Question": "What is a narrowboat?", "Truth_rewrite": "What is a narrowboat?",
           "Truth_passages": ["p1"], "Answer": "A boat.", "Conversation_no": 1, "Turn_no": 1}  # fmt: skip
    rec.update(extra)
    return rec


def test_misspelled_required_and_optional_fields(tmp_path):
    rec = _rec()
    rec["Qestion"] = rec.pop("Question")
    _write(tmp_path, [rec])
    with pytest.raises(DataError, match=r"line 2: missing field 'Question'"):
        list(get_reader("qrecc", tmp_path).turns())
    rec = _rec()
    rec["Truth_Rewrite"] = rec.pop("Truth_rewrite")  # optional, but a near miss is not silently dropped
    _write(tmp_path, [rec])
    with pytest.raises(DataError, match=r"missing field 'Truth_rewrite' \(found 'Truth_Rewrite'"):
        list(get_reader("qrecc", tmp_path).turns())


def test_empty_question_names_the_record(tmp_path):
    _write(tmp_path, [_rec(), _rec(Turn_no=2, Question="", Context=["What is a narrowboat?", "A boat."])])
    with pytest.raises(DataError, match=r"record 'train-1_2': empty question"):
        list(get_reader("qrecc", tmp_path).turns())


def test_wrong_type(tmp_path):
    _write(tmp_path, [_rec(Truth_passages="p1")])
    with pytest.raises(DataError, match=r"field 'Truth_passages' should be list, got str"):
        list(get_reader("qrecc", tmp_path).qrels())


def test_truncated_file(tmp_path):
    _write(tmp_path, json.dumps([_rec(), _rec(Turn_no=2)], indent=1)[:-30])
    with pytest.raises(DataError, match=r"qrecc_train.json, line \d+: truncated JSON"):
        list(get_reader("qrecc", tmp_path).turns())


def test_collection_errors_name_the_line(tmp_path):
    _write(tmp_path, [_rec()])
    (tmp_path / "collection.jsonl").write_bytes(b'{"id": "p1", "contents": "ok"}\n{"id": "p2", "contents": "\xfe"}\n')
    with pytest.raises(DataError, match=r"collection.jsonl, line 2: not valid UTF-8"):
        list(get_reader("qrecc", tmp_path).passages())
    (tmp_path / "collection.jsonl").write_text('{"id": "p1", "contents": "ok"}\n{"id": "p2", "contents": "cut\n')
    with pytest.raises(DataError, match=r"collection.jsonl, line 2: malformed JSON"):
        list(get_reader("qrecc", tmp_path).passages())
