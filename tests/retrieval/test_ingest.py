"""Ingest validation: every problem is a clear error naming the file and the record; nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from retrieval.datasets import get_reader
from core.errors import DataError
from retrieval.ingest import SplitConfig, assign_splits, ingest
from core.paths import DEMO_DATA


def _write(folder: Path, convs: list[dict], passages: list[dict], qrels: list[tuple]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conversations.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    (folder / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in passages))
    (folder / "qrels.tsv").write_text("turn_id\tdoc_id\trelevance\n" + "".join("\t".join(map(str, q)) + "\n"
                                                                             for q in qrels))
    return folder


CONVS = [{"conversation_id": "c1", "turns": [{"question": "Who built it?", "answer": "Eiffel.", "rewrite": "x"},
                                             {"question": "When?", "answer": "1889."}]},
         {"conversation_id": "c2", "turns": [{"question": "What is Go?"}]}]
PASSAGES = [{"id": "p1", "title": "T", "text": "one"}, {"id": "p2", "text": "two"}]
QRELS = [("c1_1", "p1", 2), ("c1_2", "p2", 1)]


def test_demo_ingests_with_documented_counts(tmp_path):
    stats = ingest(get_reader("disco", DEMO_DATA), tmp_path, SplitConfig())
    assert (stats["conversations"], stats["turns"], stats["passages"]) == (36, 201, 278)
    assert stats["turns_with_qrels"] == stats["turns"] == stats["turns_with_human_rewrite"]
    turns = pl.read_parquet(tmp_path / "turns.parquet")
    # History is oldest first and includes the answers; splits are by whole conversation.
    a01_3 = turns.filter(pl.col("turn_id") == "a01_3").row(0, named=True)
    assert [h["role"] for h in a01_3["history"]] == ["user", "agent", "user", "agent"]
    assert a01_3["history"][0]["text"] == "Which planet is closest to the Sun?"
    assert turns.group_by("conversation_id").agg(pl.col("split").n_unique())["split"].max() == 1


def test_history_and_split_columns(tmp_path):
    data = _write(tmp_path / "d", CONVS, PASSAGES, QRELS)
    ingest(get_reader("disco", data), tmp_path / "o", SplitConfig(test_fraction=0.5, seed=1))
    turns = pl.read_parquet(tmp_path / "o" / "turns.parquet").sort("turn_id")
    assert turns["turn_id"].to_list() == ["c1_1", "c1_2", "c2_1"]
    assert turns.row(1, named=True)["history"] == [{"role": "user", "text": "Who built it?"},
                                                   {"role": "agent", "text": "Eiffel."}]
    assert turns["human_rewrite"].to_list() == ["x", None, None]


def test_split_is_deterministic_and_by_conversation():
    ids = [f"c{i}" for i in range(20)]
    a = assign_splits(ids, SplitConfig(test_fraction=0.3, seed=5))
    assert a == assign_splits(list(reversed(ids)), SplitConfig(test_fraction=0.3, seed=5))
    assert sum(v == "test" for v in a.values()) == 6


def test_dev_split_comes_out_of_train_and_leaves_test_unchanged():
    ids = [f"c{i}" for i in range(20)]
    plain = assign_splits(ids, SplitConfig(test_fraction=0.3, seed=5))
    with_dev = assign_splits(ids, SplitConfig(test_fraction=0.3, dev_fraction=0.2, seed=5))
    assert {c for c, s in with_dev.items() if s == "test"} == {c for c, s in plain.items() if s == "test"}
    dev = {c for c, s in with_dev.items() if s == "dev"}
    assert len(dev) == 4 and all(plain[c] == "train" for c in dev)
    with pytest.raises(ValueError, match="test_fraction \\+ dev_fraction"):
        SplitConfig(test_fraction=0.9, dev_fraction=0.2)


@pytest.mark.parametrize("case, message", [
    ("dup_passage", "passages.jsonl, line 3, record 'p1': duplicate passage id 'p1'"),
    ("unknown_passage", "qrels.tsv, line 4, record 'c1_2': qrel names unknown passage 'p9'"),
    ("unknown_turn", "qrels.tsv, line 4, record 'c9_1': qrel names unknown turn 'c9_1'"),
    ("empty_question", "conversations.jsonl, line 2, record 'c2_1': empty question"),
    ("empty_passage", "passages.jsonl, line 2, record 'p2': empty passage text"),
    ("dup_turn", "conversations.jsonl, line 3, record 'c1_1': duplicate turn id 'c1_1'"),
])
def test_bad_input_names_file_line_and_record(tmp_path, case, message):
    convs, passages, qrels = [dict(c) for c in CONVS], [dict(p) for p in PASSAGES], list(QRELS)
    if case == "dup_passage":
        passages.append({"id": "p1", "text": "again"})
    elif case == "unknown_passage":
        qrels.append(("c1_2", "p9", 1))
    elif case == "unknown_turn":
        qrels.append(("c9_1", "p1", 1))
    elif case == "empty_question":
        convs[1] = {"conversation_id": "c2", "turns": [{"question": "  "}]}
    elif case == "empty_passage":
        passages[1] = {"id": "p2", "text": ""}
    elif case == "dup_turn":
        convs.append(CONVS[0])
    data = _write(tmp_path / "d", convs, passages, qrels)
    with pytest.raises(DataError) as e:
        ingest(get_reader("disco", data), tmp_path / "o", SplitConfig())
    assert message in str(e.value)


def test_lenient_mode_skips_and_counts(tmp_path):
    data = _write(tmp_path / "d", CONVS, PASSAGES, QRELS + [("c1_2", "p9", 1), ("c9_1", "p1", 1)])
    stats = ingest(get_reader("disco", data), tmp_path / "o", SplitConfig(), strict=False)
    assert stats["skipped"] == {"qrel_unknown_passage": 1, "qrel_unknown_turn": 1}
    assert stats["qrels"] == 2
    assert "line 4" in stats["skipped_examples"]["qrel_unknown_passage"]


def test_malformed_json_line(tmp_path):
    data = _write(tmp_path / "d", CONVS, PASSAGES, QRELS)
    with open(data / "passages.jsonl", "a") as f:
        f.write('{"id": "p3", "text": "cut off\n')
    with pytest.raises(DataError, match=r"passages.jsonl, line 3: malformed JSON"):
        ingest(get_reader("disco", data), tmp_path / "o", SplitConfig())
    # The failed ingest wrote nothing half-way: no partial corpus file was left behind.
    assert not (tmp_path / "o" / "corpus.parquet").exists()
    assert not list((tmp_path / "o").glob(".*tmp"))


def test_misspelled_field_gets_a_hint(tmp_path):
    data = _write(tmp_path / "d", [{"conversation_id": "c1", "turns": [{"Question": "Who?"}]}], PASSAGES, [])
    with pytest.raises(DataError, match=r"line 1: missing field 'question' \(found 'Question': check the spelling\)"):
        ingest(get_reader("disco", data), tmp_path / "o", SplitConfig())


def test_lenient_mode_skips_what_later_stages_would_trip_on(tmp_path):
    convs = CONVS + [{"conversation_id": "c 3", "turns": [{"question": "Spaced id?"}]},
                     {"conversation_id": "c4", "turns": [{"question": "Typed?", "answer": 7}]}]
    passages = PASSAGES + [{"id": "p 3", "text": "three"}, {"id": "p4", "text": "x" * 1_000_001}]
    stats = ingest(get_reader("disco", _write(tmp_path / "d", convs, passages, QRELS)), tmp_path / "o",
                   SplitConfig(), strict=False)
    assert stats["skipped"] == {"bad_id": 2, "wrong_type": 1, "too_long": 1}
    assert stats["turns"] == 3 and stats["passages"] == 2
    assert "line 3, record 'c 3_1': conversation id 'c 3' contains whitespace" in stats["skipped_examples"]["bad_id"]
    turns = pl.read_parquet(tmp_path / "o" / "turns.parquet")
    assert turns["turn_id"].to_list() == ["c1_1", "c1_2", "c2_1"]


def test_turn_numbers_start_at_one():
    from retrieval.datasets.base import Turn
    from retrieval.validate import turn_problem

    assert turn_problem(Turn("c", 0, "q?"), False) == ("bad_turn", "turn number 0 should be at least 1 "
                                                                   "(turns are numbered from 1)")
    assert turn_problem(Turn("c", True, "q?", turn_id="c_1"), False)[0] == "wrong_type"  # a bool is no number
    assert turn_problem(Turn("c", 2, "q?", split="valid"), True)[1].startswith("split 'valid' should be one of")
    assert turn_problem(Turn("c", 2, "q?", history=[("bot", "x")]), False)[0] == "wrong_type"
    assert turn_problem(Turn("c", 2, "q?"), True) is None
