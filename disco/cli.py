"""The ``disco`` command line: run the pipeline or one stage, show configs, open the Prefect UI."""

from __future__ import annotations

import atexit
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal, Optional

import typer

from core.errors import DiscoError
from disco import shutdown
from disco.boundary import DEBUG_ENV, Boundary, quiet_console_tracebacks, report
from disco.help import Command
from flows.env import prefect_env as _prefect_env
from flows.server import shared_server

# At exit, Python's last garbage collections walk every object of the modules a command imported (Prefect, pydantic,
# pyarrow, polars): about 1 s of a 5-6 s fully cached `disco run` on 2 busy cores (docs/benchmarks.md,
# "Orchestration"). Frozen objects are left to the operating system instead. Exit handlers run last registered first:
# Prefect's (imported later; they send the last logs and events) run before this, and every output is written and
# closed by then.
atexit.register(gc.freeze)

app = typer.Typer(add_completion=False, no_args_is_help=True, cls=Boundary,
                  help="DiSCo: distil LLM query rewriting into a conversational SPLADE encoder, as a Prefect DAG.")


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", envvar=DEBUG_ENV,
                                        help="show full tracebacks (Prefect's and the CLI's) on failure")) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"
    shutdown.install()  # SIGTERM / SIGINT: one line, exit 143 / 130, no Prefect server left (disco/shutdown.py)


def prefect_env() -> None:
    """The project's Prefect environment, with tracebacks kept off the terminal (disco/boundary.py)."""
    _prefect_env()
    quiet_console_tracebacks()


def _fail(e: Exception) -> None:
    raise typer.Exit(report(e))


@app.command(cls=Command)
def run(
    preset: str = typer.Argument("demo", help="named configuration: demo, mtrag-un, paper"),
    data: Optional[list[str]] = typer.Option(
        None, metavar="[FORMAT:]PATH", help="dataset folder (default: the preset's); repeat to pool training data: "
                                            "the first one is split into train/dev/test, the others are all train"),
    out: Optional[Path] = typer.Option(None, help="output folder (default: runs/<preset>)"),
    stage: Optional[str] = typer.Option(None, metavar="STAGE", help="run only up to this stage (see `disco stages`)"),
    refresh: bool = typer.Option(False, "--refresh", help="recompute instead of reusing cached outputs"),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="override a config field, e.g. --set "
                                                                          "distill.lr=1e-4; repeatable"),
    eval_data: Optional[Path] = typer.Option(None, help="zero-shot: train on all of --data, evaluate on this"),
    eval_format: Optional[str] = typer.Option(None, help="format of --eval-data (default: the same as --data)"),
    runner: Optional[Literal["local", "ray"]] = typer.Option(
        None, help="local or ray: shards of encoding, rewriting and teacher retrieval as tasks on a Ray cluster "
                   "(runner.address; default a local one); = --set runner.kind=..."),
) -> None:
    """Run the whole pipeline (or one stage with --stage), then print the results table."""
    prefect_env()
    try:
        from stages import config as configs

        overrides = [*([f"runner.kind={runner}"] if runner else []), *set_]
        cfg = configs.load(preset, data or None, overrides, str(eval_data) if eval_data else None, eval_format)
        out_dir = str((out or Path("runs") / cfg.name).resolve())
        from flows.pipeline import run as run_flow
        from stages.graph import NAMES

        from core.lock import run_lock

        if stage is not None and stage not in NAMES:
            raise DiscoError(f"unknown stage {stage!r}; stages: {', '.join(NAMES)}")
        cfg.check_models()
        with run_lock(out_dir), shared_server():  # the lock before Prefect starts: a second run stops at once
            run_flow(cfg, out_dir, stage=stage, refresh=refresh)
    except DiscoError as e:
        _fail(e)
    if stage in (None, "evaluate"):
        _print_results(out_dir)
    else:
        typer.echo(f"done: {out_dir}")


def _print_results(out_dir: str) -> None:
    from retrieval.report import results_table

    metrics = Path(out_dir) / "metrics.json"
    typer.echo(results_table(json.loads(metrics.read_text())))
    typer.echo(f"\nmetrics: {metrics}\nreport:  {Path(out_dir) / 'report.md'}")


@app.command(cls=Command)
def evaluate(
    run_dir: Path = typer.Argument(..., help="folder of an earlier `disco run` (holds run.json)"),
    data: Path = typer.Option(..., help="dataset to evaluate on (every turn is held out)"),
    format: Optional[str] = typer.Option(None, help="its format (default: the training data's)"),
    out: Optional[Path] = typer.Option(None, help="output folder (default: RUN_DIR/eval-<data name>)"),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="override a config field of the earlier "
                                                                          "run; repeatable"),
) -> None:
    """Evaluate a student trained by an earlier run on another dataset, without retraining (zero-shot)."""
    prefect_env()
    try:
        from core.run_record import RunRecord
        from stages.config import PipelineConfig, apply_overrides

        saved = RunRecord[PipelineConfig].read(run_dir, need=("distill",))
        eval_data = {"format": format or saved.config.data.format, "path": str(data.resolve())}
        cfg = apply_overrides(saved.config, [*set_, f"eval_data={json.dumps(eval_data)}"])
        student = saved.manifest("distill")
        student.outputs["student"].check()
        out_dir = str((out or run_dir / f"eval-{data.resolve().name}").resolve())
        from flows.pipeline import evaluate_student

        with shared_server():
            evaluate_student(cfg.eval_config(), out_dir, student)
    except DiscoError as e:
        _fail(e)
    _print_results(out_dir)


@app.command("rewrite-eval", cls=Command)
def rewrite_eval(
    dataset: str = typer.Argument("demo", help="demo, canard-dev, cast2019, or a dataset folder (with --format)"),
    rewrites: list[Path] = typer.Option([], "--rewrites", metavar="PATH", help="a rewrites.parquet, a run folder, or a "
                                        "JSONL (turn_id, rewrite) / TSV file; repeatable"),
    preset: Optional[str] = typer.Option(None, help="also generate rewrites with this preset's `rewrite` config"),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="override the preset, e.g. --set "
                                                                          "rewrite.prompt=few-shot; repeatable"),
    run_dir: Optional[Path] = typer.Option(None, "--run", help="an earlier `disco run` folder: its rewrites, and "
                                           "retrieval with each source on its index"),
    limit: Optional[int] = typer.Option(None, help="about this many turns (whole conversations)"),
    skip: int = typer.Option(0, help="skip the conversations of the first SKIP turns"),
    format: Optional[str] = typer.Option(None, help="format of a dataset folder"),
    out: Path = typer.Option(Path("runs/rewrite-eval"), help="report.md, summary.json, per_turn.parquet"),
    cache: Optional[Path] = typer.Option(None, help="where generated rewrites are kept (default: OUT/cache)"),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="with a preset whose LLM is the "
                                  "fine-tuned rewriter, also the base LLM prompted as before fine-tuning"),
) -> None:
    """Rewrite quality against human rewrites: token F1, ROUGE, exact match, copies, answer-like outputs."""
    prefect_env()
    try:
        from retrieval.rewrite_eval import read_rewrites, resolve_dataset
        from stages import config as configs

        resolve_dataset(dataset, format)  # bad input fails here, before Prefect starts
        cfg = configs.load(preset, None, set_) if preset else None
        sources = [str(p) for p in rewrites] + ([str(run_dir)] if run_dir else [])
        for s in sources:
            read_rewrites(s)
        from flows.rewrite_eval import rewrite_eval_flow

        with shared_server():
            rewrite_eval_flow(dataset, str(out.resolve()), sources, cfg.rewrite if cfg else None,
                              str(run_dir) if run_dir else None, skip, limit, format,
                              str(cache.resolve()) if cache else None, rewriter=cfg.rewriter if cfg else None,
                              baseline=baseline)
    except DiscoError as e:
        _fail(e)
    typer.echo((out / "report.md").read_text(encoding="utf-8"))


@app.command("config", cls=Command)
def show_config(
    preset: str = typer.Argument("demo", help="named configuration (see `disco presets`)"),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="override a config field; repeatable"),
) -> None:
    """Print a preset's full configuration as JSON (after --set overrides)."""
    from stages import config as configs

    try:
        typer.echo(configs.load(preset, None, set_).model_dump_json(indent=2))
    except DiscoError as e:
        _fail(e)


@app.command(cls=Command)
def presets() -> None:
    """List the named configurations."""
    from stages.config import PRESETS_DIR, preset_names

    for name in preset_names():  # the first comment line of stages/presets/<name>.yaml says what it is for
        first = (PRESETS_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0]
        typer.echo(f"{name:10s} {first.lstrip('# ') if first.startswith('#') else ''}")


@app.command("stages", cls=Command)
def show_stages() -> None:
    """The pipeline's stages as a markdown table (the README's, generated from the declarations)."""
    from stages.table import stage_table

    typer.echo(stage_table())


BACKEND_HELP = ("auto: the in-memory sparse matrix up to 500,000 passages, else Lucene (the teacher and evaluate "
                "stages' rule); lucene or sparse: that one. The same hits either way")
BackendName = Literal["auto", "lucene", "sparse"]  # retrieval.index.sparse.Backend (not imported: --help stays fast)


@app.command(cls=Command)
def search(
    run_dir: Path = typer.Argument(..., help="folder of a finished `disco run`"),
    conversation: Optional[Path] = typer.Option(None, help='JSON file: [{"speaker": "user"|"agent", "text": '
                                                             '...}, ...], oldest first (default: interactive)'),
    k: int = typer.Option(10, min=1, help="passages to show"),
    json_: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    backend: BackendName = typer.Option("auto", help=BACKEND_HELP),
) -> None:
    """Search a trained run for a conversation's last turn, or interactively turn by turn.

    Interactive commands: /show N (a passage whole), /new, /help; Ctrl-D or Ctrl-C ends.
    """
    from disco.serving import terminal

    try:
        terminal.search(run_dir, conversation, k, json_, backend)
    except DiscoError as e:
        _fail(e)


@app.command(cls=Command)
def serve(
    run_dir: Path = typer.Argument(..., help="folder of a finished `disco run`, or registry:NAME@ALIAS (the student "
                                             "a registry alias names, followed: swapped when the alias moves)"),
    host: str = typer.Option("127.0.0.1", help="address to bind (loopback by default)"),
    port: int = typer.Option(8000, help="port"),
    backend: BackendName = typer.Option("auto", help=BACKEND_HELP),
    workers: int = typer.Option(1, min=1, max=64, help="processes on the port, each with its own model"),
    pin_cpus: bool = typer.Option(False, "--pin-cpus", help="with --workers N: each worker on its own share of the "
                                                            "CPUs (Linux)"),
    threads: int = typer.Option(1, min=1, max=256, help="torch threads encoding one conversation (1 stays fast "
                                                        "beside busy neighbours: docs/benchmarks.md)"),
    batch_threads: Optional[int] = typer.Option(None, min=1, max=256, help="torch threads encoding a batch of "
                                                                           "concurrent requests (default: --threads)"),
    max_wait_ms: float = typer.Option(2.0, min=0, max=1000, help="how long a batch of concurrent requests "
                                                                 "waits for more (0: never)"),
    max_batch: int = typer.Option(32, min=1, max=1024, help="conversations encoded in one forward pass at most"),
    bucket_tokens: int = typer.Option(16, min=1, max=512, help="for a student the packed batches do not cover: texts "
                                                              "are padded to a multiple of this many tokens and "
                                                              "batched with texts of the same padded length"),
    ray: bool = typer.Option(False, "--ray", help="serve as Ray Serve replicas (a local cluster unless --address)"),
    replicas: int = typer.Option(1, min=1, max=256, help="with --ray: replicas, each with its own model"),
    address: Optional[str] = typer.Option(None, help="with --ray: an existing Ray cluster (e.g. auto, "
                                                     "ray://HOST:10001)"),
    registry_uri: Optional[str] = typer.Option(None, help="with registry:NAME@ALIAS: the MLflow server (default "
                                                          "MLFLOW_TRACKING_URI)"),
    poll_s: float = typer.Option(10.0, min=0.1, help="with registry:NAME@ALIAS: seconds between checks of the alias"),
) -> None:
    """Serve the run's student over HTTP until SIGTERM or Ctrl-C: a page at /, POST /search, the API at /docs.

    Also POST /search/batch and GET /health (ready once the model is loaded); one access-log line per request on
    stderr. Concurrent requests are encoded together (--max-wait-ms, --max-batch); --workers N runs N processes
    on the port; --ray runs the same app as Ray Serve replicas.
    """
    from disco.serving import terminal
    from disco.serving.config import RayConfig, ServeOptions

    try:
        if not ray and (replicas != 1 or address is not None):
            raise DiscoError("--replicas and --address are for --ray (Ray Serve replicas); --workers N runs N "
                             "processes on this machine")
        if ray and workers != 1:
            raise DiscoError("--workers is for a service without --ray; with --ray use --replicas")
        if pin_cpus and workers == 1:
            raise DiscoError("--pin-cpus is for --workers N (N > 1): one process already has the CPUs to itself")
        options = ServeOptions(backend=backend, workers=workers, pin_cpus=pin_cpus,
                               batching={"max_wait_ms": max_wait_ms, "max_batch": max_batch, "threads": threads,
                                         "batch_threads": batch_threads, "bucket_tokens": bucket_tokens},
                               ray=RayConfig(replicas=replicas, address=address) if ray else None,
                               registry_uri=registry_uri, poll_s=poll_s)
        terminal.serve(run_dir, host, port, options)
    except DiscoError as e:
        _fail(e)


@app.command(cls=Command)
def export(
    run_dir: Path = typer.Argument(..., help="folder of a finished `disco run`"),
    out_dir: Path = typer.Argument(..., help="output folder (include 'splade' in its name for Pyserini)"),
) -> None:
    """Export the run's student as a Hugging Face folder (safetensors, tokenizer, model card)."""
    from disco.serving import terminal

    try:
        terminal.export(run_dir, out_dir)
    except DiscoError as e:
        _fail(e)


@app.command("gc", cls=Command)
def gc_(
    run_dir: Path = typer.Argument(..., help="folder of a `disco run` (its --out)"),
    yes: bool = typer.Option(False, "--yes", help="remove (without it: only show what would go and its size)"),
    only_last_run: bool = typer.Option(False, "--only-last-run",
                                       help="also remove cached stages the last run did not use"),
) -> None:
    """Remove stage folders no cache entry uses and temporary folders of killed runs (dry run by default)."""
    from disco.gc import gc

    gc(run_dir, yes, only_last_run, typer.echo)


@app.command(cls=Command)
def ui(port: int = typer.Option(4200, help="port on 127.0.0.1")) -> None:
    """Start the Prefect server and UI on 127.0.0.1 with the project's Prefect home (SIGTERM or Ctrl-C stops it)."""
    from core.proc import stop_group
    from disco.serving.service import bind

    bind("127.0.0.1", port).close()  # a port in use is one line here, not Prefect's traceback
    prefect_env()
    typer.echo(f"Prefect UI: http://127.0.0.1:{port}  (PREFECT_HOME={os.environ['PREFECT_HOME']})")
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    # the UI's pages call this API (Prefect's default would be port 4200 whatever --port says)
    env = {**os.environ, "PREFECT_UI_API_URL": os.environ.get("PREFECT_UI_API_URL", f"http://127.0.0.1:{port}/api")}
    # its own process group, stopped as a whole (SIGTERM, then SIGKILL) when this command is interrupted or
    # terminated: killing only `prefect server start` would leave its uvicorn running
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        code = proc.wait()
    except (KeyboardInterrupt, shutdown.Terminated) as e:  # the normal way to stop a service: not an error
        stop_group(proc, grace_s=10)
        typer.echo(f"Prefect UI: stopped ({shutdown.signal_name(e)})", err=True)
        raise typer.Exit(0) from None
    except BaseException:
        stop_group(proc, grace_s=10)
        raise
    raise typer.Exit(code)


@app.command(cls=Command)
def deploy(
    limit: int = typer.Option(1, min=1, help="flow runs at a time (1: stages share one GPU)"),
    prefect_yaml: Path = typer.Option(Path(__file__).resolve().parents[1] / "prefect.yaml", help="deployments"),
) -> None:
    """Register prefect.yaml's deployments (pipeline, one per stage) on the server and serve them (disco/deploy.py)."""
    prefect_env()
    from disco import deploy as deployments

    try:
        deployments.serve(prefect_yaml, limit)
    except DiscoError as e:
        _fail(e)


from disco.encode_cli import encode as _encode  # noqa: E402  (`disco encode`: its code lives there)

app.command("encode", cls=Command)(_encode)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
