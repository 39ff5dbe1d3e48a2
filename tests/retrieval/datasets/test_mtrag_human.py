"""The mtrag reader (MTRAG's human conversations, retrieval tasks) on a small copy and on ../shared/data/mtrag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import DataError
from retrieval.datasets import get_reader

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "mtrag"


def _write(root: Path, questions: list[dict], rewrites: list[dict], qrels: list[tuple[str, str]],
           documents: list[dict], tasks: list[dict]) -> Path:
    tasks_dir = root / "mtrag-human" / "retrieval_tasks" / "clapnq"
    (tasks_dir / "qrels").mkdir(parents=True)
    (tasks_dir / "clapnq_questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (tasks_dir / "clapnq_rewrite.jsonl").write_text("".join(json.dumps(q) + "\n" for q in rewrites))
    (tasks_dir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                                 "".join(f"{q}\t{d}\t1\n" for q, d in qrels))
    (root / "mtrag-human" / "evaluations").mkdir()
    (root / "mtrag-human" / "evaluations" / "reference_subset_with_human_evaluations.json").write_text(
        json.dumps({"documents": documents, "tasks": tasks}))
    return root


def test_small_copy(tmp_path):
    root = _write(
        tmp_path,
        questions=[{"_id": "c1<::>1", "text": "|user|: who built the Eiffel tower"},
                   {"_id": "c1<::>2", "text": "|user|: who built the Eiffel tower\n|user|: when did it open?"}],
        rewrites=[{"_id": "c1<::>2", "text": "|user|: When did the Eiffel Tower open?"}],
        qrels=[("c1<::>1", "d1"), ("c1<::>2", "d2"), ("c1<::>2", "gone")],
        documents=[{"document_id": "d1", "text": " Gustave Eiffel's company built it. ", "title": "Eiffel Tower"},
                   {"document_id": "d2", "text": "It opened in 1889."},
                   {"document_id": "unjudged", "text": "Not named by any qrel of the kept domains."}],
        tasks=[{"task_id": "c1<::>2", "targets": [{"speaker": "agent", "text": "In March 1889."}]}],
    )
    r = get_reader("mtrag", root, collections=["clapnq"])
    turns = list(r.turns())
    assert [(t.turn_id, t.conversation_id, t.turn) for t in turns] == [("c1<::>1", "c1", 1), ("c1<::>2", "c1", 2)]
    assert turns[1].question == "when did it open?" and turns[1].history == [("user", "who built the Eiffel tower")]
    assert turns[1].human_rewrite == "When did the Eiffel Tower open?" and turns[1].answer == "In March 1889."
    assert turns[0].human_rewrite is None and turns[0].answer is None
    assert [(p.doc_id, p.title, p.text) for p in r.passages()] == [
        ("d1", "Eiffel Tower", "Gustave Eiffel's company built it."), ("d2", "", "It opened in 1889.")]
    # the qrel naming a passage whose text is not in the snapshot is left out
    assert [(q.turn_id, q.doc_id) for q in r.qrels()] == [("c1<::>1", "d1"), ("c1<::>2", "d2")]
    with pytest.raises(DataError, match=r"unknown MTRAG collection\(s\) \['wiki'\]"):
        get_reader("mtrag", root, collections=["wiki"])
    with pytest.raises(DataError, match=r"fiqa_rewrite.jsonl: missing"):
        list(get_reader("mtrag", root, collections=["fiqa"]).turns())


def test_a_bad_id_names_the_file_and_line(tmp_path):
    root = _write(tmp_path, [{"_id": "c1-1", "text": "|user|: hello"}], [], [], [], [])
    with pytest.raises(DataError, match=r"clapnq_questions.jsonl, line 1: _id 'c1-1': expected"):
        list(get_reader("mtrag", root, collections=["clapnq"]).turns())


@pytest.mark.shared_data
def test_shared_mtrag_human():
    if not (SHARED / "mtrag-human").is_dir():
        pytest.skip("shared MTRAG data not present")
    r = get_reader("mtrag", SHARED, collections=["clapnq", "fiqa"])
    turns = list(r.turns())
    judged = {q.turn_id for q in r.qrels()}
    assert len(turns) == 208 + 180 and all(t.human_rewrite for t in turns)
    assert len(judged) == 56 + 53 and len(list(r.passages())) == 205
    # MTRAG's conversations are not MTRAG-UN's: no task id is shared
    un = {json.loads(x)["task_id"] for x in (SHARED / "mtragun-human/generation_tasks/reference.jsonl").open()}
    assert not un & {t.turn_id for t in turns}
