"""Shared fixtures: one Prefect test harness per session, isolated Prefect home, the shared data folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()
DEMO_DATA = ROOT / "data" / "demo"
CONVERSATIONS = ["a01", "a02", "a09", "a10", "b03", "b04", "b15", "b16"]

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A real Prefect API (the test harness: a temporary server on SQLite), started once per session."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(home / "storage")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def write_slice(out: Path, conversations: list[str], distractor_step: int = 9) -> Path:
    """The demo's ``conversations``, their judged passages and every ``distractor_step``-th other passage."""
    convs = [json.loads(x) for x in (DEMO_DATA / "conversations.jsonl").read_text().splitlines()]
    convs = [c for c in convs if c["conversation_id"] in conversations]
    qrels = pl.read_csv(DEMO_DATA / "qrels.tsv", separator="\t")
    qrels = qrels.filter(pl.col("turn_id").str.split("_").list.first().is_in(conversations))
    passages = [json.loads(x) for x in (DEMO_DATA / "passages.jsonl").read_text().splitlines()]
    judged = set(qrels["doc_id"])
    keep = [p for p in passages if p["id"] in judged] + [p for p in passages if p["id"] not in judged][::distractor_step]
    (out / "conversations.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    (out / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in keep))
    qrels.write_csv(out / "qrels.tsv", separator="\t")
    return out


@pytest.fixture(scope="session")
def demo_slice(tmp_path_factory) -> Path:
    """8 conversations (4 confusable pairs), their judged passages and 30 other passages as distractors."""
    return write_slice(tmp_path_factory.mktemp("demo-slice"), CONVERSATIONS)


@pytest.fixture(scope="session")
def small_demo_slice(tmp_path_factory) -> Path:
    """4 conversations (2 confusable pairs, 23 turns), their judged passages and 15 other passages."""
    return write_slice(tmp_path_factory.mktemp("small-demo-slice"), ["a01", "a02", "b03", "b04"], 18)
