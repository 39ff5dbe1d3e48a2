"""A cache hit is used only when its outputs are whole: a damaged Lucene index is rebuilt, never read by Java.

Real Prefect API (cached task states), real SPLADE-tiny, real Lucene index, on a small dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.config import apply_overrides, preset


def _dataset(folder: Path) -> Path:
    folder.mkdir()
    convs = [{"conversation_id": f"c{i}", "turns": [{"question": f"what is topic {i}?", "rewrite": f"topic {i}?"},
                                                    {"question": "where?", "rewrite": f"where is topic {i}?"}]}
             for i in range(4)]
    (folder / "conversations.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs))
    (folder / "passages.jsonl").write_text("".join(
        json.dumps({"id": f"p{i}", "text": f"topic {i % 4} is a thing found in place number {i}."}) + "\n"
        for i in range(12)))
    (folder / "qrels.tsv").write_text("".join(f"c{i}_{t}\tp{i}\t1\n" for i in range(4) for t in (1, 2)))
    return folder


@pytest.mark.slow
def test_damaged_index_is_rebuilt_on_a_cache_hit(prefect_api, tmp_path):
    from flows.pipeline import pipeline

    cfg = apply_overrides(preset("demo"), [f"data.path={_dataset(tmp_path / 'data')}",
                                           'teacher.systems=["human"]', "distill.learn_from=human"])
    out = str(tmp_path / "run")
    first = pipeline(cfg, out, stage="index")
    lucene = Path(first["index"]["lucene"])
    biggest = max((p for p in lucene.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])  # a torn file, same name

    second = pipeline(cfg, out, stage="teacher")  # the cached index is not whole: rebuilt, then searched
    assert second["index"].key == first["index"].key and second["index"]["lucene"].exists()
    assert second["index"].outputs["lucene"].verify()  # whole again
    assert second["teacher"].stats["rows"] > 0
