"""Stage 2, rewriter: the LLM that rewrites turns, fine-tuned with LoRA on public rewrite data (models/rewriter/).

Used when ``rewrite.model`` is ``"rewriter"`` (the demo and MTRAG-UN presets): the rewrite stage then loads this
stage's merged model folder, with either backend. ``rewriter.mode``:

- ``packaged``: the adapter the project ships in ``data/rewriter/`` (or ``rewriter.adapter``), merged into the
  base LLM: seconds. Its card says how it was trained (the command, the data hashes, the dev figure);
- ``train``: fine-tune here on ``rewriter.sources`` (retrieval/rewriter_data.py), the prompt formatted as the
  rewrite stage formats it; the dev F1 picks the step; checkpoints in ``work`` make a killed run resume;
- ``off``, or ``rewrite.model`` naming another LLM: nothing to make (the card says so).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from core.errors import DiscoError
from core.io import Manifest, write_json
from core.paths import ROOT
from models.rewriter.config import RewriterConfig, read_card
from retrieval.report import line_plot_markdown
from stages.base import Artifact, Stage

REWRITER = "rewriter"  # the value of rewrite.model that names this stage's output
PACKAGED = ROOT / "data" / "rewriter"
PROMPT_FIELDS = ("prompt", "max_history_chars")  # what an adapter was trained with must be what rewriting uses


def run(out: Path, work: Path, progress, rewriter: RewriterConfig, needed: bool, prompt: str, max_history_chars: int,
        max_new_tokens: int, output_checks: bool, ingest: list[Manifest]) -> dict:
    """``rewriter.json`` (the card) and ``model/`` (the merged model folder; empty when unused), ``adapter/``.
    ``needed``: ``rewrite.model`` names this stage's model and some dataset computes an LLM teacher."""
    from models.rewrite.config import RewriteConfig

    (out / "model").mkdir()
    used = needed and rewriter.mode != "off"
    card: dict = {"used": used, "mode": rewriter.mode, "base": rewriter.base, "prompt": prompt,
                  "max_history_chars": max_history_chars}
    if not used:
        (out / "model" / "README.txt").write_text("No rewriter: rewrite.model names another LLM, or no LLM teacher "
                                                  "is computed in this run.\n")
        write_json(out / "rewriter.json", card)
        return {"used": False, "mode": rewriter.mode}
    rewrite = RewriteConfig(prompt=prompt, max_history_chars=max_history_chars, max_new_tokens=max_new_tokens,
                            output_checks=output_checks)
    if rewriter.mode == "packaged":
        stats = _packaged(out, rewriter, card)
    else:
        stats = _train(out, work, progress, rewriter, rewrite, ingest, card)
    write_json(out / "rewriter.json", card)
    return stats


def check_adapter(cfg: RewriterConfig, prompt: str) -> tuple[Path, dict]:
    """The packaged adapter's folder and card, checked against the run's settings: an adapter folder, trained on
    the prompt layout rewriting will use (the history budget, ``max_history_chars``, may differ) and on
    ``rewriter.base``. Reads JSON only (no model library), so that a run checks it before any stage
    (``PipelineConfig.check_models``) as well as when the stage merges it."""
    folder = Path(cfg.adapter) if cfg.adapter else PACKAGED
    meta = read_card(folder)
    if not (folder / "adapter_config.json").exists() or not meta:
        raise DiscoError(f"rewriter.adapter {folder}: not an adapter folder (adapter_config.json and "
                         "disco_rewriter.json expected; `rewriter.mode=train` makes one)")
    trained = meta.get("rewrite", {}).get("prompt")
    if trained != prompt:
        raise DiscoError(f"rewriter: the adapter in {folder} was trained on the {trained!r} prompt, but rewriting "
                         f"would use {prompt!r}; set rewrite.prompt={trained}, or rewriter.mode=train")
    if meta.get("base") != cfg.base:
        raise DiscoError(f"rewriter: the adapter in {folder} belongs to {meta.get('base')!r}, not rewriter.base "
                         f"{cfg.base!r}")
    return folder, meta


def _packaged(out: Path, cfg: RewriterConfig, card: dict) -> dict:
    from models.rewriter.lora import load_adapter, load_base, merge

    folder, meta = check_adapter(cfg, card["prompt"])
    model, tokenizer = load_base(cfg.base)
    card.update({"adapter": str(folder), "trained": meta})
    shutil.copytree(folder, out / "adapter")
    merge(load_adapter(model, folder), tokenizer, out / "model", card)
    return {"used": True, "mode": "packaged", "best_step": meta.get("best_step"), "dev_f1": meta.get("dev_f1"),
            "dev": meta.get("history", []), "samples": meta.get("samples", [])}


def _train(out: Path, work: Path, progress, cfg: RewriterConfig, rewrite, ingest: list[Manifest],
           card: dict) -> dict:
    from models.rewriter.lora import merge, save_adapter
    from models.rewriter.train import train
    from retrieval.rewriter_data import build, source_files

    own = [pl.read_parquet(m["turns"]) for m in ingest] if "own" in cfg.sources else []
    examples, dev, counts = build(cfg, rewrite, own)
    work.mkdir(parents=True, exist_ok=True)
    bar = progress("rewriter-progress", f"fine-tuning {cfg.base} on {len(examples)} rewrites", cfg.steps)
    model, tokenizer, result = train(examples, dev, cfg, rewrite, work, bar)
    bar.close()
    card.update({"config": cfg.model_dump(mode="json"), "rewrite": {k: card[k] for k in PROMPT_FIELDS},
                 "examples": counts, "dev_turns": len(dev), "skipped": result.skipped, "data": source_files(
                     cfg.sources), "best_step": result.best_step, "dev_f1": round(result.best_f1, 4),
                 "history": result.history, "samples": result.dev_samples, "train_seconds": result.seconds})
    save_adapter(model, out / "adapter", card)
    pl.DataFrame(result.losses).write_parquet(out / "loss.parquet")
    merge(model, tokenizer, out / "model", card)
    return {"used": True, "mode": "train", "examples": counts, "best_step": result.best_step,
            "dev_f1": round(result.best_f1, 4), "dev": result.history, "samples": result.dev_samples,
            "train_seconds": result.seconds}


def resolve_llm(rewriter: RewriterConfig, llm, cache: Path):
    """The rewrite config ``llm`` with ``model`` made concrete: when it names ``"rewriter"``, this stage runs as a
    plain function into ``cache`` (reused while its key holds; the run's own turns are not among its data) and
    its merged model folder is named. For ``disco rewrite-eval``, benchmarks and tests."""
    from stages.base import read_fields, run_stage

    if llm.model != REWRITER:
        return llm
    holder = type("Config", (), {"rewriter": rewriter, "rewrite": llm, "rewriter_needed": True})
    m = run_stage(STAGE, read_fields(STAGE, holder), {"ingest": []}, cache)
    if not m.stats.get("used"):
        raise DiscoError("rewrite.model is 'rewriter' but rewriter.mode is 'off'")
    return llm.model_copy(update={"model": str(m["model"])})


def external_files(rewriter: RewriterConfig, needed: bool, **_) -> dict:
    """What the stage reads outside the project's code: the packaged adapter's files, or the public data files it
    trains on (so that a new adapter or changed data makes a new key)."""
    if not needed or rewriter.mode == "off":
        return {}
    if rewriter.mode == "packaged":
        from core.io import sha256_path

        folder = Path(rewriter.adapter) if rewriter.adapter else PACKAGED
        return {"adapter": {f.name: sha256_path(f) for f in sorted(folder.glob("*")) if f.is_file()}}
    from retrieval.rewriter_data import source_files

    return {"data": source_files(rewriter.sources)}


def artifacts(m: Manifest) -> list[Artifact]:
    """Dev F1 by step, sample rewrites beside the human ones and, when trained here, the loss curve."""
    s = m.stats
    if not s.get("used"):
        return []
    out = [Artifact("table", "rewriter-dev", s.get("dev") or [],
                    f"dev token F1 of the rewriter by step (step 0: the base LLM); step {s.get('best_step')} kept"),
           Artifact("table", "rewriter-samples", s.get("samples") or [],
                    "dev rewrites of the kept step beside the human ones")]
    loss = Path(m.dir) / "loss.parquet"
    if loss.exists():
        df = pl.read_parquet(loss)
        out.append(Artifact("markdown", "rewriter-loss-curve", line_plot_markdown(df, "step", ["loss"],
                                                                                   "rewriter training loss"),
                            "LoRA training loss (rewrite tokens only)"))
    return out


STAGE = Stage(
    name="rewriter",
    summary="the rewriting LLM fine-tuned with LoRA on public rewrite data (CANARD, TREC CAsT 2019/2022, the "
            "run's own train turns) or the packaged adapter, merged into a model folder both backends load",
    upstream=("ingest",),
    reads=("rewriter", "rewriter_needed as needed", "rewrite.prompt", "rewrite.max_history_chars",
           "rewrite.max_new_tokens", "rewrite.output_checks"),
    outputs={"card": "rewriter.json", "model": "model"},
    run=run,
    scope="training",
    external_files=external_files,
    artifacts=artifacts,
)
