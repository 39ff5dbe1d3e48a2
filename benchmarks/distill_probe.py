"""Train a student directly on a finished run's cached stage outputs and print its dev curve (never test).

For quick exploration of distillation settings without the pipeline: reads ``RUN_DIR/run.json`` (the ingest,
rewrite, index and teacher manifests), applies ``--set`` overrides to the run's configuration, and calls
:func:`models.search.search_and_train` (``distill.search``, then :func:`models.distill.train_student`) with the run's dev turns choosing the best epoch. A second ``--run`` pools
another run's train turns (its own corpus and teacher runs); ``--run DIR@TEACHER`` takes that run's examples
from another teacher than ``distill.learn_from`` (e.g. a pooled dataset with human rewrites). Settings found here
are confirmed through ``benchmarks/ablations.py`` and the presets; results go to ``docs/results.md``.

    python -m benchmarks.distill_probe --run runs/demo --out runs/probe-a --set distill.steps=260 \\
        --set distill.input.answers=false --set distill.contrastive_weight=0.1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True,
                        help="a finished run folder (DIR or DIR@TEACHER); repeat to pool")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    import polars as pl
    import torch

    from models.examples import Source
    from models.search import search_and_train
    from core.run_record import RunRecord
    from stages.config import PipelineConfig, apply_overrides

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg, sources = None, []
    for i, spec in enumerate(args.run):
        run_dir, _, own_teacher = spec.partition("@")
        record = RunRecord[PipelineConfig].read(run_dir, need=("ingest", "index", "teacher", "rewrite"))
        if cfg is None:
            cfg = apply_overrides(record.config, args.overrides)
        path = record.output
        runs = pl.read_parquet(path("teacher", "runs"))
        name = own_teacher or cfg.distill.learn_from
        teacher_run = runs.filter(pl.col("system") == name)
        if teacher_run.is_empty():
            raise SystemExit(f"{run_dir}: no teacher run {name!r}; runs: {sorted(set(runs['system']))}")
        teacher_run.write_parquet(out / f"teacher_run-{i}.parquet")
        sources.append(Source(path("ingest", "turns"), path("ingest", "qrels"), out / f"teacher_run-{i}.parquet",
                              path("index", "doc_vectors"), name="" if len(args.run) == 1 else f"s{i}",
                              rewrites=path("rewrite", "rewrites"), systems=tuple(cfg.teacher.systems),
                              learn_from=name))
    t0 = time.time()
    summary = search_and_train(  # distill.search's axes first, when set (models/search.py)
        cfg.distill, cfg.encoder.model, sources, out / "train", max_length=cfg.encoder.query_max_length,
        quant_scale=cfg.encoder.quant_scale, k=cfg.teacher.k, dev=sources[0],
        on_epoch=lambda row: print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                               for k, v in row.items()}), flush=True))
    for row in summary["search"]:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    print(json.dumps({"sets": args.overrides, "examples": summary["examples"], "steps": summary["steps"],
                      "chosen": summary["chosen"], "last_turn_dev_terms": summary["last_turn_dev_terms"],
                      "best_epoch": summary["best_epoch"], "best_dev": summary["best_dev"],
                      "sampling": summary["sampling"], "seconds": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
