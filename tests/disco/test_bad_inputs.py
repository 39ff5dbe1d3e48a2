"""Bad inputs through the real command line: one short message naming what and where, a non-zero exit code,
no traceback on the terminal, no partial output. Each case is a row of docs/reliability.md (checked below).

Every case runs `disco` in a subprocess against the session's Prefect API, up to the earliest stage that can
detect the problem (mostly `--stage ingest`, a few seconds each).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

# about 30 runs of the `disco` command line, ~2.5 s each: ~90 s on a loaded 2-core machine
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


@dataclass
class Case:
    id: str
    make: Callable[[Path, object], list[str]]  # (tmp folder, cli helpers) -> the command's arguments
    message: str  # a regex the error message must match
    code: int = 2
    stage: str = "ingest"  # the stage that fails: no folder of it may be left
    fsize_kb: int | None = None  # run under this file-size limit (writes past it fail like on a full disk)


def _native(tmp: Path, cli, convs=None, passages=None, qrels=None) -> Path:
    return cli.native_dataset(tmp / "data", convs, passages, qrels)


def _run(data: Path, tmp: Path, *extra: str, stage: str = "ingest", fmt: str | None = None) -> list[str]:
    spec = f"{fmt}:{data}" if fmt else str(data)
    return ["run", "demo", "--data", spec, "--out", str(tmp / "out"), "--stage", stage, *extra]


def _edit(path: Path, fn: Callable[[str], str]) -> None:
    path.write_text(fn(path.read_text()))


def _native_case(edit: Callable[[Path], None], *extra: str) -> Callable:
    def make(tmp: Path, cli) -> list[str]:
        data = _native(tmp, cli)
        edit(data)
        return _run(data, tmp, *extra)
    return make


def _conv(**turn_fields) -> Callable[[Path], None]:
    """Replace the first conversation's first turn fields (None deletes the field)."""
    def edit(data: Path) -> None:
        lines = (data / "conversations.jsonl").read_text().splitlines()
        obj = json.loads(lines[0])
        for k, v in turn_fields.items():
            if k.startswith("conv_"):
                obj[k[5:]] = v
            elif v is None:
                obj["turns"][0].pop(k)
            else:
                obj["turns"][0][k] = v
        lines[0] = json.dumps(obj)
        (data / "conversations.jsonl").write_text("\n".join(lines) + "\n")
    return edit


def _copy_fixture(name: str, edit: Callable[[Path], None], fmt: str, *extra: str) -> Callable:
    def make(tmp: Path, cli) -> list[str]:
        data = tmp / name
        shutil.copytree(FIXTURES / name, data)
        edit(data)
        return _run(data, tmp, *extra, fmt=fmt)
    return make


def _mtrag(task_edit: Callable[[dict], None]) -> Callable:
    def make(tmp: Path, cli) -> list[str]:
        base = tmp / "mtrag" / "mtragun-human"
        (base / "generation_tasks").mkdir(parents=True)
        (base / "retrieval_tasks" / "qrels").mkdir(parents=True)
        task = {"conversation_id": "c1", "task_id": "c1<::>1", "turn": 1, "Collection": "clapnq",
                "input": [{"speaker": "user", "text": "what is a narrowboat?"}], "targets": [{"text": "a boat"}],
                "contexts": [{"document_id": "d1", "text": "a narrowboat is a boat."}]}
        task_edit(task)
        (base / "generation_tasks" / "reference.jsonl").write_text(json.dumps(task) + "\n")
        (base / "retrieval_tasks" / "qrels" / "clapnq.tsv").write_text("query-id\tcorpus-id\tscore\nc1<::>1\td1\t1\n")
        return _run(tmp / "mtrag", tmp, fmt="mtrag-un")
    return make


def _write(rel: str, content: bytes | str) -> Callable[[Path], None]:
    def edit(data: Path) -> None:
        p = data / rel
        p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    return edit


def _corrupt_run_json(tmp: Path, cli) -> list[str]:
    (tmp / "old").mkdir()
    (tmp / "old" / "run.json").write_text('{"config": {"name": "demo"}, "stages": {"distill": ')
    return ["evaluate", str(tmp / "old"), "--data", str(_native(tmp, cli))]


def _bad_model(content: str | None) -> Callable:
    def make(tmp: Path, cli) -> list[str]:
        model = tmp / "model"
        model.mkdir()
        if content is not None:
            (model / "config.json").write_text(content)
        return _run(_native(tmp, cli), tmp, "--set", f"encoder.model={model}", stage="index")
    return make


_J = "conversations.jsonl"
CASES = [
    # the project's own format (data/README.md)
    Case("native-truncated-line", _native_case(lambda d: _edit(d / _J, lambda s: s[: s.index("\n") - 10] + s[s.index("\n"):])),
         r"conversations\.jsonl, line 1: malformed JSON"),
    Case("native-missing-field", _native_case(_conv(question=None)), r"line 1: missing field 'question'"),
    Case("native-wrong-type", _native_case(_conv(answer=42)), r"line 1, record 'c0_1': answer should be str"),
    Case("native-turns-not-list", _native_case(_conv(conv_turns="hello")), r"field 'turns' should be list"),
    Case("native-id-with-space", _native_case(_conv(conv_conversation_id="c 0")),
         r"conversation id 'c 0' contains whitespace"),
    Case("native-duplicate-conversation", _native_case(lambda d: _edit(d / _J, lambda s: s + s.splitlines()[0] + "\n")),
         r"line 4, record 'c0_1': duplicate turn id 'c0_1'"),
    Case("native-empty-question", _native_case(_conv(question="  ")), r"record 'c0_1': empty question"),
    Case("native-not-utf8", _native_case(_write(_J, b'{"conversation_id": "c\xff", "turns": []}\n')),
         r"line 1: not valid UTF-8"),
    Case("native-not-an-object", _native_case(_write(_J, "[1, 2]\n")), r"line 1: expected a JSON object, got list"),
    Case("native-empty-file", _native_case(_write(_J, "")), r"no conversation turns found"),
    Case("native-missing-qrels", _native_case(lambda d: (d / "qrels.tsv").unlink()),
         r"qrels\.tsv: missing: a disco dataset needs this file"),
    Case("native-qrel-unknown-passage", _native_case(_write("qrels.tsv", "turn_id\tdoc_id\trelevance\nc0_1\tp99\t1\n")),
         r"qrels\.tsv, line 2, record 'c0_1': qrel names unknown passage 'p99'"),
    Case("native-qrel-unknown-turn", _native_case(_write("qrels.tsv", "turn_id\tdoc_id\trelevance\nc9_1\tp1\t1\n")),
         r"qrels\.tsv, line 2, record 'c9_1': qrel names unknown turn 'c9_1'"),
    Case("native-qrel-bad-relevance", _native_case(_write("qrels.tsv", "turn_id\tdoc_id\trelevance\nc0_1\tp1\thigh\n")),
         r"qrels\.tsv, line 2: relevance 'high' is not an integer"),
    Case("native-qrel-wrong-columns", _native_case(_write("qrels.tsv", "turn_id\tdoc_id\trelevance\nc0_1\tp1\n")),
         r"qrels\.tsv, line 2: expected 3 fields, found 2"),
    Case("native-passage-id-with-space", _native_case(_write("passages.jsonl", '{"id": "p 1", "text": "x"}\n')),
         r"passages\.jsonl, line 1, record 'p 1': passage id 'p 1' contains whitespace"),
    Case("native-passage-title-number", _native_case(_write("passages.jsonl", '{"id": "p1", "title": 7, "text": "x"}\n')),
         r"passages\.jsonl, line 1, record 'p1': passage title should be str"),
    Case("native-gigantic-line", _native_case(_write(_J, "x" * (65 << 20))), r"line 1: line longer than 64 MiB"),
    Case("native-gigantic-passage", _native_case(_write("passages.jsonl", json.dumps({"id": "p1", "text": "y" * 1_000_001}) + "\n")),
         r"passage text is 1,000,001 characters long"),
    Case("native-bad-split", _native_case(_conv(conv_split="validation"), "--set", "data.split.method=dataset"),
         r"split 'validation' should be one of train, dev, test"),
    Case("data-folder-missing", lambda tmp, cli: _run(tmp / "nowhere", tmp), r"nowhere: dataset folder does not exist"),
    Case("data-is-a-file", lambda tmp, cli: _run(_native(tmp, cli) / _J, tmp),
         r"/data/conversations\.jsonl: a file, not a dataset folder: give the folder that holds the dataset's files "
         r"\(perhaps \S+/data\)"),  # the path once (it used to be taken as a folder: .../conversations.jsonl/...)
    # public formats (retrieval/datasets)
    Case("mtrag-turn-zero", _mtrag(lambda t: t.update(turn=0)), r"reference\.jsonl, line 1, record 'c1<::>1': turn number 0"),
    Case("mtrag-unknown-speaker", _mtrag(lambda t: t["input"][0].update(speaker="bot")), r"unknown speaker 'bot'"),
    Case("qrecc-wrong-type", _copy_fixture("qrecc", lambda d: _edit(d / "qrecc_train.json",
                                                                    lambda s: s.replace('"Turn_no": 1', '"Turn_no": "one"', 1)),
                                           "qrecc"), r"qrecc_train\.json, line \d+: field 'Turn_no' should be int"),
    Case("topiocqa-truncated", _copy_fixture("topiocqa", lambda d: _edit(d / "data/retriever/all_history/train.json",
                                                                         lambda s: s[: len(s) // 2]), "topiocqa"),
         r"train\.json, line \d+: (truncated|malformed) JSON"),
    Case("ikat-qrels-columns", _copy_fixture("ikat", _write("2023_qrels.txt", "4-1_1 Q0 3\n"), "trec-ikat",
                                             "--set", 'data.options={"qrels": "2023_qrels.txt"}'),
         r"2023_qrels\.txt, line 1: expected 4 fields, found 3"),
    Case("canard-not-an-array", lambda tmp, cli: (tmp.joinpath("canard").mkdir(), tmp.joinpath("canard/dev.json").write_text('{"a": 1}'),
                                                  _run(tmp / "canard", tmp, fmt="canard"))[-1],
         r"dev\.json, line 1: expected a JSON array"),
    Case("unknown-format", _native_case(lambda d: None, "--set", "data.format=parquet"), r"unknown dataset format 'parquet'"),
    # configuration: presets, --set, --stage
    Case("set-bad-number", _native_case(lambda d: None, "--set", "distill.lr=fast"), r"invalid --set override: distill\.lr"),
    Case("set-unknown-field", _native_case(lambda d: None, "--set", "distill.learning_rate=1"), r"unknown field 'learning_rate'"),
    Case("set-teacher-slash", _native_case(lambda d: None, "--set", 'teacher.systems=["human","my/llm"]',
                                           "--set", "distill.learn_from=human"), r"teacher name 'my/llm'"),
    Case("set-split-fractions", _native_case(lambda d: None, "--set", "data.split.test_fraction=0.9",
                                             "--set", "data.split.dev_fraction=0.5"), r"test_fraction \+ dev_fraction must be <= 1"),
    Case("set-vllm-python", _native_case(lambda d: None, "--set", "rewrite.vllm_python=/bin/sh"),
         r"unknown field 'vllm_python'"),
    Case("unknown-preset", lambda tmp, cli: ["run", "tiny", "--out", str(tmp / "out")], r"unknown preset 'tiny'"),
    Case("unknown-stage", lambda tmp, cli: _run(_native(tmp, cli), tmp, stage="train"), r"unknown stage 'train'"),
    Case("out-is-a-file", lambda tmp, cli: (tmp.joinpath("out").write_text("x"), _run(_native(tmp, cli), tmp))[-1],
         r"out is a file, not a folder"),
    # commands on earlier runs
    Case("evaluate-corrupt-run-json", _corrupt_run_json, r"run\.json: not a run record"),
    Case("evaluate-no-run", lambda tmp, cli: ["evaluate", str(tmp), "--data", str(_native(tmp, cli))], r"run\.json not found"),
    # the machine
    Case("disk-full-while-writing", lambda tmp, cli: _run(_native(tmp, cli, passages=[
        {"id": f"p{i}", "text": os.urandom(3000).hex()} for i in range(40)]), tmp),
         r"file too large for this process's file-size limit \(ulimit -f\) while writing.*\n  in stage ingest .*\n  Free space", code=4, fsize_kb=64),
    # model folders
    Case("model-folder-missing", lambda tmp, cli: _run(_native(tmp, cli), tmp, "--set", f"encoder.model={tmp}/nomodel",
                                                       stage="index"), r"model folder .*nomodel does not exist", stage="index"),
    Case("model-folder-empty", _bad_model(None), r"model folder .*model: no config\.json", stage="index"),
    Case("model-config-corrupt", _bad_model("{not json"), r"model folder .*model: config\.json is not valid JSON \(",
         stage="index"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_message(case: Case, tmp_path: Path, cli):
    args = case.make(tmp_path, cli)
    done = cli.run(*args, fsize_kb=case.fsize_kb)
    shown = done.stdout + done.stderr
    error = done.stderr[done.stderr.rfind("error: "):]
    if os.environ.get("DISCO_BAD_INPUT_DUMP"):  # what the user saw, for docs/reliability.md's table
        with open(os.environ["DISCO_BAD_INPUT_DUMP"], "a") as f:
            f.write(json.dumps({"id": case.id, "args": args, "code": done.returncode,
                                "error": error.replace(str(tmp_path), "<tmp>")}) + "\n")
    assert done.returncode == case.code, shown
    assert "Traceback" not in shown and 'File "' not in shown, shown
    assert re.search(case.message, error), shown
    assert len(error.splitlines()) <= 6, error  # one short paragraph
    out = tmp_path / "out"
    assert cli.leftovers(out) == []
    assert not list(out.glob(f"stages/{case.stage}-*")) and not (out / "run.json").exists()


def test_debug_shows_the_traceback(tmp_path: Path, cli):
    data = _native(tmp_path, cli)
    _conv(answer=42)(data)
    done = cli.run("--debug", *_run(data, tmp_path))
    assert done.returncode == 2 and "Traceback" in done.stderr and "answer should be str" in done.stderr


def test_every_case_is_a_row_of_the_reliability_table():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    rows = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.M))
    assert len(CASES) >= 30 and {c.id for c in CASES} <= rows, sorted({c.id for c in CASES} - rows)
