"""The topiocqa reader: the DPR retriever format with a collection (fixture), the dataset format (shared dev)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retrieval.datasets import get_reader
from core.errors import DataError

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO / ".." / "shared" / "data"
FIXTURE = REPO / "tests" / "fixtures" / "topiocqa"


def test_fixture_dpr_format_with_collection():
    r = get_reader("topiocqa", FIXTURE, rewrites={"dev": "rewrites_dev.json"})
    assert r.has_corpus and set(r.files) == {"train", "dev"}
    turns = list(r.turns())
    assert [(t.split, t.turn_id) for t in turns] == [
        ("train", "train-1_1"), ("train", "train-1_2"), ("train", "train-1_3"), ("train", "train-2_1"),
        ("train", "train-2_2"), ("dev", "dev-1_1"), ("dev", "dev-1_2"),
    ]  # both splits number conversations from 1: the split keeps the ids apart  # fmt: skip
    assert (turns[5].conversation_id, turns[5].turn) == ("dev-1", 1)
    third = turns[2]
    assert third.question == "what else did she design"  # the current question is the LAST [SEP] part
    assert third.history == [
        ("user", "who built the lighthouse at port elmsworth"), ("agent", "Harriet Coombe"),
        ("user", "how tall is it"), ("agent", "31 metres"),
    ]  # fmt: skip
    assert third.answer == "a swing bridge over the Tarn" and third.human_rewrite is None
    assert third.where == (str(FIXTURE / "data/retriever/all_history/train.json"), 28)
    assert turns[6].human_rewrite == "why did the tarn ferry stop running in 1958"

    qrels = [(q.turn_id, q.doc_id, q.relevance) for q in r.qrels()]
    assert qrels[:3] == [("train-1_1", "3", 1), ("train-1_2", "4", 1), ("train-1_3", "5", 1)] and len(qrels) == 7
    assert qrels[-1] == ("dev-1_2", "2", 1)
    raw_ids = get_reader("topiocqa", FIXTURE, files={"dev": "data/retriever/all_history/dev.json"}, split_prefix=False)
    assert [t.turn_id for t in raw_ids.turns()] == ["1_1", "1_2"]

    passages = list(r.passages())
    assert len(passages) == 8
    assert (passages[2].doc_id, passages[2].title) == ("3", "Port Elmsworth Light, History")
    assert passages[7].text == 'Locals call the fruit "golden apple" in late autumn.'  # csv quoting undone
    assert passages[7].where[1] == 9  # the header is line 1


def test_without_collection_there_is_no_corpus(tmp_path):
    shutil.copytree(FIXTURE / "data" / "retriever", tmp_path / "data" / "retriever")
    r = get_reader("topiocqa", tmp_path)
    assert r.has_corpus is False and list(r.passages()) == []
    assert len(list(r.turns())) == 7 and len(list(r.qrels())) == 7


@pytest.mark.shared_data
def test_shared_dev_dataset_format():
    root = SHARED / "topiocqa"
    if not (root / "topiocqa_dev.json").exists():
        pytest.skip("shared TopiOCQA data not present")
    r = get_reader("topiocqa", root)
    assert set(r.files) == {"dev"} and r.has_corpus is False
    turns = list(r.turns())
    assert len(turns) == 2514 and len({t.conversation_id for t in turns}) == 205
    assert {t.split for t in turns} == {"dev"}
    assert sum(1 for t in turns if t.answer == "UNANSWERABLE") == 174
    t = next(t for t in turns if t.turn_id == "dev-1_6")
    assert t.question == "can you please name some movies the third actress acted in?"
    assert len(t.history) == 10 and t.history[1] == ("agent", "Britain")
    assert t.answer == '"The Night They Raided Minsky\'s", "Get Carter", "The Wicker Man"'
    assert list(r.qrels()) == []  # no gold passages in the early release


# -- malformed input ---------------------------------------------------------------------------------------
def _dpr(tmp_path: Path, records: list[dict] | str) -> Path:
    folder = tmp_path / "data" / "retriever" / "all_history"
    folder.mkdir(parents=True)
    text = records if isinstance(records, str) else json.dumps(records, indent=1)
    (folder / "train.json").write_text(text)
    return tmp_path


def _rec(conv=1, turn=1, question="what is a quince", **extra) -> dict:
    rec = {"conv_id": conv, "turn_id": turn, "question": question, "answers": ["a fruit"],
           "positive_ctxs": [{"title": "Quince", "text": "A fruit.", "passage_id": "6"}]}  # fmt: skip
    rec.update(extra)
    return rec


def test_truncated_json(tmp_path):
    text = json.dumps([_rec(), _rec(turn=2, question="a [SEP] b [SEP] c")], indent=1)
    root = _dpr(tmp_path, text[: len(text) - 40])
    with pytest.raises(DataError, match=r"train.json, line \d+: truncated JSON"):
        list(get_reader("topiocqa", root).turns())


def test_misspelled_field(tmp_path):
    rec = _rec()
    rec["positive_ctx"] = rec.pop("positive_ctxs")
    root = _dpr(tmp_path, [rec])
    with pytest.raises(DataError, match=r"line 2: missing field 'positive_ctxs'"):
        list(get_reader("topiocqa", root).qrels())


def test_empty_question_names_the_record(tmp_path):
    root = _dpr(tmp_path, [_rec(), _rec(turn=2, question="what is a quince [SEP] a fruit [SEP]  ")])
    with pytest.raises(DataError, match=r"record 'train-1_2': empty question"):
        list(get_reader("topiocqa", root).turns())


def test_history_must_pair_up(tmp_path):
    root = _dpr(tmp_path, [_rec(turn=2, question="q1 [SEP] q2")])
    with pytest.raises(DataError, match=r"record 'train-1_2': question has 2 '\[SEP\]'-separated parts"):
        list(get_reader("topiocqa", root).turns())


def test_collection_bad_utf8_and_columns(tmp_path):
    root = _dpr(tmp_path, [_rec()])
    tsv = root / "full_wiki_segments.tsv"
    tsv.write_bytes(b"id\ttext\ttitle\n1\tfine\tT [SEP] S\n2\tbad \xff byte\tT\n")
    with pytest.raises(DataError, match=r"full_wiki_segments.tsv, line 3: not valid UTF-8"):
        list(get_reader("topiocqa", root).passages())
    tsv.write_text("id\ttext\ttitle\n1\tno title column\n")
    with pytest.raises(DataError, match=r"line 2: expected 3 tab-separated fields"):
        list(get_reader("topiocqa", root).passages())


def test_no_turns_file(tmp_path):
    with pytest.raises(DataError, match="no TopiOCQA turns file found"):
        get_reader("topiocqa", tmp_path)
