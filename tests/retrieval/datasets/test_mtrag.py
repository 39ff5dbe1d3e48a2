"""The mtrag-un reader on the shared MTRAG-UN files and on small malformed copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.datasets import get_reader
from core.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
MTRAG = SHARED / "mtrag"


def _shared() -> Path:
    if not (MTRAG / "mtragun-human" / "generation_tasks" / "reference.jsonl").exists():
        pytest.skip("shared MTRAG data not present")
    return MTRAG


@pytest.mark.shared_data
def test_real_counts_and_records():
    r = get_reader("mtrag-un", _shared())
    turns = list(r.turns())
    passages = list(r.passages())
    qrels = list(r.qrels())
    assert len(turns) == 219
    assert len({t.conversation_id for t in turns}) == 219  # one task per conversation
    assert len(passages) == 469 and len({p.doc_id for p in passages}) == 469  # 476 contexts, 7 repeats
    assert len(qrels) == 339  # 181 + 158 rows, header lines excluded
    assert len({q.turn_id for q in qrels}) == 141  # 78 tasks have no qrels: still turns
    assert {q.relevance for q in qrels} == {1}
    assert {q.turn_id for q in qrels} <= {t.turn_id for t in turns}
    assert {q.doc_id for q in qrels} <= {p.doc_id for p in passages}
    assert all(t.human_rewrite is None and t.split is None and t.answer for t in turns)

    first = turns[0]
    assert first.turn_id == "18ef26058d321c5d96ca3ebf8117789e<::>7"
    assert first.conversation_id == "18ef26058d321c5d96ca3ebf8117789e" and first.turn == 7
    assert first.question == "I mean current EV's battery does not stand for a used car market...how do you think?"
    assert len(first.history) == 12
    assert first.history[0] == ("user", "How to pay with cash when car shopping?")
    assert [role for role, _ in first.history] == ["user", "agent"] * 6
    assert first.answer.startswith("The longevity of EV batteries can indeed impact the used car market.")
    assert first.where[1] == 1 and first.where[0].endswith("reference.jsonl")

    by_id = {p.doc_id: p for p in passages}
    assert by_id["162428-0-349"].text.startswith("As an electric vehicle engineer")  # leading newline stripped
    assert sum(1 for p in passages if p.title) == 312  # ClapNQ passages carry a title


@pytest.mark.shared_data
def test_real_collection_filter_and_split():
    root = _shared()
    r = get_reader("mtrag-un", root, collections=["clapnq"], split_by_collection={"clapnq": "train", "fiqa": "test"})
    turns = list(r.turns())
    assert len(turns) == 142 and {t.split for t in turns} == {"train"}
    assert len(list(r.passages())) == 312
    qrels = list(r.qrels())
    assert len(qrels) == 181 and all(q.where[0].endswith("clapnq.tsv") for q in qrels)

    r = get_reader("mtrag-un", root / "mtragun-human", split_by_collection={"clapnq": "train", "fiqa": "test"})
    splits = [t.split for t in r.turns()]
    assert splits.count("train") == 142 and splits.count("test") == 77


# -- malformed input ---------------------------------------------------------------------------------------
def _task(conv: str, turn: int, question: str = "And the second one?", **extra) -> dict:
    task = {
        "conversation_id": conv,
        "task_id": f"{conv}<::>{turn}",
        "turn": str(turn),
        "input": [
            {"speaker": "user", "text": "Name two rivers in Wales."},
            {"speaker": "agent", "text": "The Teifi and the Usk."},
            {"speaker": "user", "text": question},
        ],
        "targets": [{"speaker": "agent", "text": "The Usk rises in the Black Mountain."}],
        "contexts": [{"document_id": "d1", "text": "The Usk rises on the Black Mountain."}],
        "Collection": "clapnq",
    }
    task.update(extra)
    return task


def _write(root: Path, lines: list[str], qrels: str = "query-id\tcorpus-id\tscore\nc1<::>2\td1\t1\n") -> Path:
    (root / "mtragun-human" / "generation_tasks").mkdir(parents=True)
    (root / "mtragun-human" / "retrieval_tasks" / "qrels").mkdir(parents=True)
    (root / "mtragun-human" / "generation_tasks" / "reference.jsonl").write_text("\n".join(lines) + "\n")
    (root / "mtragun-human" / "retrieval_tasks" / "qrels" / "clapnq.tsv").write_text(qrels)
    return root


def test_small_layout(tmp_path):
    root = _write(tmp_path, [json.dumps(_task("c1", 2)), json.dumps(_task("c2", 2, contexts=[]))])
    r = get_reader("mtrag-un", root)
    turns = list(r.turns())
    assert [t.turn_id for t in turns] == ["c1<::>2", "c2<::>2"]
    assert turns[0].history == [("user", "Name two rivers in Wales."), ("agent", "The Teifi and the Usk.")]
    assert turns[0].answer == "The Usk rises in the Black Mountain."
    assert [p.doc_id for p in r.passages()] == ["d1"]
    assert [(q.turn_id, q.doc_id, q.relevance) for q in r.qrels()] == [("c1<::>2", "d1", 1)]


def test_same_passage_twice_is_one_passage_but_a_different_text_is_an_error(tmp_path):
    same = _write(tmp_path / "a", [json.dumps(_task("c1", 2)), json.dumps(_task("c2", 2))])
    assert [p.doc_id for p in get_reader("mtrag-un", same).passages()] == ["d1"]
    other = _task("c2", 2, contexts=[{"document_id": "d1", "text": "Something else."}])
    root = _write(tmp_path / "b", [json.dumps(_task("c1", 2)), json.dumps(other)])
    with pytest.raises(DataError, match=r"line 2.*'d1' has a different text than on line 1"):
        list(get_reader("mtrag-un", root).passages())


def test_truncated_json_line(tmp_path):
    root = _write(tmp_path, [json.dumps(_task("c1", 2)), json.dumps(_task("c2", 2))[:-20]])
    with pytest.raises(DataError) as e:
        list(get_reader("mtrag-un", root).turns())
    assert "reference.jsonl, line 2" in str(e.value) and "malformed JSON" in str(e.value)


def test_misspelled_field(tmp_path):
    task = _task("c1", 2)
    task["conversation_ID"] = task.pop("conversation_id")
    root = _write(tmp_path, [json.dumps(task)])
    with pytest.raises(DataError, match=r"line 1: missing field 'conversation_id' \(found 'conversation_ID'"):
        list(get_reader("mtrag-un", root).turns())


def test_bad_utf8(tmp_path):
    root = _write(tmp_path, [json.dumps(_task("c1", 2))])
    path = root / "mtragun-human" / "generation_tasks" / "reference.jsonl"
    path.write_bytes(path.read_bytes() + b'{"conversation_id": "c\xe92"}\n')
    with pytest.raises(DataError, match=r"reference.jsonl, line 2: not valid UTF-8"):
        list(get_reader("mtrag-un", root).turns())


def test_empty_utterance_names_the_task(tmp_path):
    root = _write(tmp_path, [json.dumps(_task("c1", 2)), json.dumps(_task("c2", 2, question="  "))])
    with pytest.raises(DataError, match=r"line 2, record 'c2<::>2': empty input message 3 text"):
        list(get_reader("mtrag-un", root).turns())


def test_conversation_must_end_with_the_user(tmp_path):
    task = _task("c1", 2)
    task["input"].append({"speaker": "agent", "text": "Anything else?"})
    root = _write(tmp_path, [json.dumps(task)])
    with pytest.raises(DataError, match="record 'c1<::>2': the last input message should be the user's question"):
        list(get_reader("mtrag-un", root).turns())


def test_bad_qrels_score(tmp_path):
    root = _write(tmp_path, [json.dumps(_task("c1", 2))], qrels="query-id\tcorpus-id\tscore\nc1<::>2\td1\thigh\n")
    with pytest.raises(DataError, match=r"clapnq.tsv, line 2: relevance 'high' is not an integer"):
        list(get_reader("mtrag-un", root).qrels())


def test_missing_tasks_file(tmp_path):
    with pytest.raises(DataError, match="missing"):
        list(get_reader("mtrag-un", tmp_path).turns())
