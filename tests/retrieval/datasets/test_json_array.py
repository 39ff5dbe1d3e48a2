"""The streaming JSON-array parser behind the JSON readers (retrieval.datasets._common)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.datasets._common import iter_json_array, opt_field
from core.errors import DataError


@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 20])
def test_matches_json_load_with_lines(tmp_path, chunk):
    records = [{"a": i, "text": "caf\u00e9 \u2013 " * i, "n": [1.5, None, True]} for i in range(6)] + [12345]
    path = tmp_path / "x.json"
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False))
    got = list(iter_json_array(path, chunk_size=chunk))
    assert [obj for _, obj in got] == records
    lines = path.read_text().split("\n")
    assert all(lines[n - 1].strip() in ("{", "12345") for n, _ in got)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ('{"a": 1}', r"line 1: expected a JSON array"),
        ('[\n{"a": 1},\n{"a": ', r"line 3: truncated JSON"),
        ('[\n{"a": 1}\n', r"line 3: truncated JSON: the top-level array is never closed"),
        ('[\n{"a": 1},\n]', r"line 3: malformed JSON"),
        ('[\n{"a": 1}\n{"a": 2}]', r"line 3: malformed JSON \(expected ',' or '\]'"),
        ('[{"a": 1}] trailing', r"unexpected text after the JSON array"),
    ],
)
def test_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        list(iter_json_array(path, chunk_size=4))


def test_bad_utf8_line(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b'[\n{"a": "ok"},\n{"a": "\xc3\x28"}\n]')
    with pytest.raises(DataError, match=r"x.json, line 3: not valid UTF-8"):
        list(iter_json_array(path, chunk_size=3))


def test_bom_is_accepted(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b'\xef\xbb\xbf[{"a": 1}]')
    assert list(iter_json_array(path)) == [(1, {"a": 1})]


def test_opt_field():
    p = Path("f.json")
    assert opt_field({"a": 1}, "Rewrite", p, 1) is None
    assert opt_field({"Rewrite": None}, "Rewrite", p, 1) is None
    with pytest.raises(DataError, match=r"missing field 'Rewrite' \(found 'rewrite'"):
        opt_field({"rewrite": "x"}, "Rewrite", p, 1)
    with pytest.raises(DataError, match=r"field 'Rewrite' should be str, got int"):
        opt_field({"Rewrite": 3}, "Rewrite", p, 1)
    assert opt_field({"Truth_rewrite": "x", "Rewrite": "y"}, "Truth_rewrite", p, 1, known=("Rewrite",)) == "x"
