"""Rewrite quality: any teacher's rewrites against the human rewrites of a dataset (``disco rewrite-eval``).

Per rewrite source (the raw ``utterance``, each teacher of a rewrites table or file, the ``human`` rewrites as
their own ceiling), over the turns that have a human rewrite:

- ``token_f1``: bag-of-words F1 (:func:`disco.evaluation.token_f1`; the measure of the CAsT / CANARD rewriting
  literature), ``rouge1`` / ``rougeL``: ROUGE-1 and ROUGE-L (longest common subsequence) F1 on lower-cased
  alphanumeric tokens, no stemming; ``exact``: exact match after lower-casing and dropping punctuation;
- ``copied``: share of rewrites equal (same normalisation) to the raw utterance;
- ``answer_like``: share that do not read as a query (no ``?`` at the end and no question word or request
  verb at the start): a small LLM answering the question instead of rewriting it. The human rewrites'
  own share is the floor (some human rewrites are keyword queries).

Where the dataset has passages (a run folder with an index), each source's retrieval effectiveness is added by
:mod:`flows.rewrite_eval`. Nothing here knows Prefect (Lupart et al. 2025 sec. 3 use these rewrites as teachers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import polars as pl

from core.errors import DataError, DiscoError
from retrieval.evaluation import token_f1
from models.rewrite.checks import looks_like_query

_TOKEN = re.compile(r"[a-z0-9]+")
METRICS = ("token_f1", "rouge1", "rougeL", "exact", "copied", "answer_like")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def _f1(common: int, n_pred: int, n_ref: int) -> float:
    if not common or not n_pred or not n_ref:
        return 0.0
    p, r = common / n_pred, common / n_ref
    return 2 * p * r / (p + r)


def rouge1(pred: str, ref: str) -> float:
    from collections import Counter

    a, b = Counter(tokens(pred)), Counter(tokens(ref))
    return _f1(sum((a & b).values()), sum(a.values()), sum(b.values()))


def rouge_l(pred: str, ref: str) -> float:
    a, b = tokens(pred), tokens(ref)
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return _f1(prev[-1], len(a), len(b))


def normalise(text: str) -> str:
    return " ".join(tokens(text))


def answer_like(text: str) -> bool:
    """True when ``text`` does not read as a query (:func:`models.rewrite.checks.looks_like_query`)."""
    return not looks_like_query(text)


def score(pred: str, human: str, utterance: str) -> dict[str, float]:
    """Every measure of one rewrite (0/1 for the shares)."""
    n = normalise(pred)
    return {
        "token_f1": token_f1(pred, human),
        "rouge1": rouge1(pred, human),
        "rougeL": rouge_l(pred, human),
        "exact": float(n == normalise(human)),
        "copied": float(n == normalise(utterance)),
        "answer_like": float(answer_like(pred)),
    }


def load_turns(fmt: str, path: str | Path, limit: int | None = None, **options) -> pl.DataFrame:
    """``turn_id, conversation_id, turn, question, history, human_rewrite`` of the turns that have a human
    rewrite (the first ``limit`` conversations' worth when given: whole conversations, in file order)."""
    from retrieval.datasets import get_reader

    rows, convs = [], []
    for t in get_reader(fmt, path, **options).turns():
        if not t.human_rewrite:
            continue
        if t.conversation_id not in convs:
            if limit is not None and len(rows) >= limit:
                break
            convs.append(t.conversation_id)
        rows.append({"turn_id": t.turn_id, "conversation_id": t.conversation_id, "turn": t.turn,
                     "question": t.question, "history": [{"role": r, "text": x} for r, x in t.history],
                     "human_rewrite": t.human_rewrite})
    if not rows:
        raise DiscoError(f"{path}: no turn with a human rewrite (format {fmt!r})")
    return pl.DataFrame(rows)


def dataset_rewrites(fmt: str, path: str | Path, **options) -> pl.DataFrame | None:
    """``turn_id, source, rewrite`` of the automatic rewrites a dataset ships (TREC CAsT 2020-2021: the
    organisers' ``automatic_rewritten_utterance``, as source ``cast-automatic``), or None."""
    from retrieval.datasets import get_reader

    reader = get_reader(fmt, path, **options)
    got = reader.automatic_rewrites() if hasattr(reader, "automatic_rewrites") else {}
    if not got:
        return None
    return pl.DataFrame({"turn_id": list(got), "source": ["cast-automatic"] * len(got), "rewrite": list(got.values())})


def read_rewrites(path: str | Path, name: str | None = None) -> pl.DataFrame:
    """``turn_id, source, rewrite`` from a rewrites table (Parquet with ``teacher``: one source per teacher), a
    run or stage folder holding one, a JSONL file (``turn_id``, ``rewrite``) or a TSV (``turn_id<TAB>rewrite``)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("rewrites.parquet")) or sorted(path.glob("stages/rewrite-*/rewrites.parquet"))
        if not found:
            raise DataError(path, "no rewrites.parquet here or under stages/rewrite-*/ (run the rewrite stage)")
        path = max(found, key=lambda p: p.stat().st_mtime)
    if not path.exists():
        raise DataError(path, "file not found")
    stem = name or path.stem
    if path.suffix == ".parquet":
        df = pl.read_parquet(path)
        if not {"turn_id", "rewrite"} <= set(df.columns):
            raise DataError(path, f"needs columns turn_id and rewrite, has {df.columns}")
        src = pl.col("teacher") if "teacher" in df.columns and name is None else pl.lit(stem)
        return df.select(pl.col("turn_id").cast(pl.String), src.alias("source"), pl.col("rewrite").fill_null(""))
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                import json

                try:
                    obj = json.loads(line)
                    rows.append((str(obj["turn_id"]), str(obj.get("rewrite") or "")))
                except (ValueError, KeyError, TypeError) as e:
                    raise DataError(path, f"expected a JSON object with turn_id and rewrite ({e})", line=n) from None
            else:
                tid, sep, text = line.rstrip("\n").partition("\t")
                if not sep:
                    raise DataError(path, "expected turn_id<TAB>rewrite", line=n)
                rows.append((tid, text))
    return pl.DataFrame(rows, schema={"turn_id": pl.String, "rewrite": pl.String}, orient="row").select(
        "turn_id", pl.lit(stem).alias("source"), "rewrite")


def evaluate(turns: pl.DataFrame, rewrites: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per-turn scores ``turn_id, source, rewrite, <METRICS>``, summary ``source, turns, <METRICS>``).

    Sources: ``utterance`` (the raw question), ``human`` and each source of ``rewrites``; a source is scored on
    the turns of ``turns`` it covers (``turns`` counts them)."""
    base = turns.select("turn_id", "question", "human_rewrite")
    parts = [base.select("turn_id", pl.lit("utterance").alias("source"), pl.col("question").alias("rewrite")),
             base.select("turn_id", pl.lit("human").alias("source"), pl.col("human_rewrite").alias("rewrite"))]
    if rewrites is not None and len(rewrites):
        parts.append(rewrites.filter(~pl.col("source").is_in(["utterance", "human"])))
    long = pl.concat(parts).join(base, on="turn_id", how="inner")
    scored = [{"turn_id": t, "source": s, "rewrite": r, **score(r, h, q)}
              for t, s, r, q, h in long.select("turn_id", "source", "rewrite", "question", "human_rewrite").iter_rows()]
    per_turn = pl.DataFrame(scored)
    order = {s: i for i, s in enumerate(dict.fromkeys(long["source"]))}
    summary = (per_turn.group_by("source").agg(pl.len().alias("turns"), *[pl.col(m).mean() for m in METRICS])
               .sort(pl.col("source").replace_strict(order, return_dtype=pl.Int64)))
    return per_turn, summary


def worst(per_turn: pl.DataFrame, turns: pl.DataFrame, n: int = 10) -> dict[str, list[dict]]:
    """Per LLM source (not ``utterance`` / ``human``), the ``n`` rewrites of lowest token F1, with the human one."""
    joined = per_turn.join(turns.select("turn_id", "question", "human_rewrite"), on="turn_id")
    out = {}
    for src in dict.fromkeys(joined["source"]):
        if src in ("utterance", "human"):
            continue
        rows = joined.filter(pl.col("source") == src).sort(["token_f1", "turn_id"]).head(n)
        out[src] = rows.select("turn_id", "question", "rewrite", "human_rewrite", "token_f1").to_dicts()
    return out


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(title: str, summary: pl.DataFrame, worst_rows: dict[str, list[dict]],
             retrieval: dict[str, dict[str, float]] | None = None, notes: Iterable[str] = ()) -> str:
    """The report: the measures table, retrieval per source when given, the worst rewrites side by side."""
    cols = ["source", "turns", *METRICS]
    lines = [f"# {title}", "", *[f"{n}" for n in notes], "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in summary.iter_rows(named=True):
        lines.append("| " + " | ".join([row["source"], str(row["turns"])]
                                        + [f"{row[m]:.3f}" for m in METRICS]) + " |")
    if retrieval:
        measures = list(next(iter(retrieval.values())))
        lines += ["", "Retrieval with each source as the query:", "", "| source | " + " | ".join(measures) + " |",
                  "|" + "---|" * (len(measures) + 1)]
        lines += ["| " + src + " | " + " | ".join(f"{v[m]:.3f}" for m in measures) + " |"
                  for src, v in retrieval.items()]
    for src, rows in worst_rows.items():
        lines += ["", f"## Worst rewrites of `{src}` (lowest token F1)", "",
                  "| turn | utterance | rewrite | human | F1 |", "|---|---|---|---|---|"]
        lines += [f"| {r['turn_id']} | {_cell(r['question'])} | {_cell(r['rewrite'])} | {_cell(r['human_rewrite'])} "
                  f"| {r['token_f1']:.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


# ----- datasets that have human rewrites, and retrieval with each source -------------------------------------

def known_datasets() -> dict[str, tuple[str, Path, dict]]:
    """Short names of the datasets with human rewrites: name -> (format, folder, reader options)."""
    from core.paths import DEMO_DATA, ROOT

    shared = (ROOT / ".." / "shared" / "data").resolve()
    return {"demo": ("disco", DEMO_DATA, {}),
            "canard-dev": ("canard", shared / "canard", {}),
            "cast2019": ("trec-cast", shared / "trec_cast", {"year": "2019"}),
            "cast2021": ("trec-cast", shared / "trec_cast", {"year": "2021"}),
            "cast2022": ("trec-cast", shared / "trec_cast", {"year": "2022"})}


def resolve_dataset(dataset: str, data_format: str | None = None) -> tuple[str, Path, dict]:
    """(format, folder, options) of a short name of :func:`known_datasets` or of a folder of ``data_format``."""
    known = known_datasets()
    if dataset in known:
        fmt, path, options = known[dataset]
    elif data_format:
        fmt, path, options = data_format, Path(dataset), {}
    else:
        raise DiscoError(f"unknown dataset {dataset!r}: one of {', '.join(known)}, or a folder with --format")
    if not Path(path).exists():
        raise DiscoError(f"{path}: dataset folder not found")
    return fmt, Path(path), options


def slice_turns(turns: pl.DataFrame, skip: int = 0, limit: int | None = None) -> pl.DataFrame:
    """Whole conversations, in order: skip conversations until ``skip`` turns are passed, then keep conversations
    until ``limit`` turns are reached (selection on one slice, report on another, never mixing a conversation)."""
    convs = list(dict.fromkeys(turns["conversation_id"]))
    sizes = dict(turns.group_by("conversation_id").len().iter_rows())
    keep, passed, taken = [], 0, 0
    for c in convs:
        if passed < skip:
            passed += sizes[c]
            continue
        if limit is not None and taken >= limit:
            break
        keep.append(c)
        taken += sizes[c]
    return turns.filter(pl.col("conversation_id").is_in(keep))


def retrieval(texts: dict[str, dict[str, str]], run_dir: Path, measures: tuple[str, ...] = ("RR@10", "nDCG@3")
              ) -> dict[str, dict[str, float]]:
    """Mean effectiveness of each source's texts (``source -> turn_id -> query``) as queries of the index and
    frozen encoder of an earlier ``disco run`` (its run.json), against that run's qrels."""
    from models.splade import SpladeConfig
    from retrieval.evaluation import aggregate, per_query
    from retrieval.index.retrieve import retrieve
    from retrieval.index.search import ImpactSearcher
    from models.splade import SpladeEncoder

    from core.run_record import RunRecord

    record = RunRecord.read(run_dir, need=("ingest", "index"))
    encoder = record.section("encoder", SpladeConfig)
    rel_threshold = int(record.config.get("evaluate", {}).get("rel_threshold", 1))
    index_dir = record.output("index", "lucene")
    qrels = pl.read_parquet(record.output("ingest", "qrels"))
    enc = SpladeEncoder(encoder.model, frozen=True)
    searcher = ImpactSearcher(index_dir)
    out = {}
    try:
        for src, queries in texts.items():
            queries = {t: q for t, q in queries.items() if t in set(qrels["turn_id"])}
            got = retrieve(enc, searcher, queries, system=src, k=100, max_length=encoder.query_max_length,
                           batch_size=encoder.batch_size, scale=encoder.quant_scale)
            pq = per_query(got.run, qrels, rel_threshold)
            pq = {t: v for t, v in pq.items() if t in queries}  # the judged turns this source covers
            agg = aggregate(pq)
            out[src] = {m: agg.get(m, 0.0) for m in measures}
    finally:
        searcher.close()
    return out
