"""How much of the conversation the student can read: input length by turn depth for each input format.

The student reads at most ``encoder.query_max_length`` tokens (256 in the paper). This counts, per turn-depth
bucket, the median token length of the student's input, the share of turns truncated, and the share whose first
user question (usually the one that names the topic) is cut away, for the paper's format and the alternatives
of :class:`models.conversation.StudentInput`. Reads an ingest stage's ``turns.parquet``.

    python -m benchmarks.input_lengths runs/mtrag-un/stages/ingest-*/turns.parquet
"""

from __future__ import annotations

import argparse

import polars as pl

FORMATS = {
    "paper (answers, newest first)": {},
    "answers cut to 20 words": {"answer_max_words": 20},
    "user turns only": {"answers": False},
}


def measure(turns_path: str, max_length: int = 256, model: str = "splade-tiny") -> pl.DataFrame:
    from transformers import AutoTokenizer

    from models.conversation import StudentInput, format_conversation
    from models.weights import resolve

    ref = resolve(model)
    tok = AutoTokenizer.from_pretrained(ref.path, **ref.kwargs)
    turns = pl.read_parquet(turns_path, columns=["turn", "question", "history"])
    rows = []
    for name, opts in FORMATS.items():
        fmt = StudentInput(**opts)
        for t in turns.iter_rows(named=True):
            text = format_conversation(t["question"], t["history"], fmt=fmt)
            ids = tok(text)["input_ids"]
            first = next((h["text"] for h in t["history"] or [] if h["role"] == "user"), None)
            kept = tok.decode(tok(text, truncation=True, max_length=max_length)["input_ids"])
            lost = first is not None and tok.decode(tok(first, add_special_tokens=False)["input_ids"]) not in kept
            rows.append((name, t["turn"], len(ids), len(ids) > max_length, lost))
    df = pl.DataFrame(rows, schema=["format", "turn", "tokens", "truncated", "first_question_cut"], orient="row")
    depth = (pl.when(pl.col("turn") == 1).then(pl.lit("1")).when(pl.col("turn") <= 3).then(pl.lit("2-3"))
             .when(pl.col("turn") <= 6).then(pl.lit("4-6")).otherwise(pl.lit("7+")))
    return (df.with_columns(depth.alias("depth")).group_by("format", "depth", maintain_order=True)
            .agg(pl.len().alias("turns"), pl.col("tokens").median().alias("median_tokens"),
                 pl.col("truncated").mean().round(3), pl.col("first_question_cut").mean().round(3))
            .sort("format", "depth"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("turns", nargs="+", help="turns.parquet of an ingest stage")
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()
    from retrieval.report import markdown_table

    for path in args.turns:
        print(f"\n{path}\n")
        print(markdown_table(measure(path, args.max_length).to_dicts()))


if __name__ == "__main__":
    main()
