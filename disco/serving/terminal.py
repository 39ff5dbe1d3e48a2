"""What ``disco search``, ``disco serve`` and ``disco export`` do (disco/cli.py only parses arguments)."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from core.errors import DataError, DiscoError
from disco.serving.batching import BatchConfig
from disco.serving.config import ServeOptions
from disco.serving.schema import Result, Turn, check_conversation, run_paths
from core.proc import Terminated, signal_name

if TYPE_CHECKING:
    from disco.serving.search import Searcher

SNIPPET = 100


def read_conversation(path: Path) -> list[dict[str, Any]]:
    """The conversation in a JSON file, checked, with errors naming the file, turn and problem."""
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        turns = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON: {e.msg}", line=e.lineno) from None
    if isinstance(turns, dict) and "conversation" in turns:
        turns = turns["conversation"]
    if not isinstance(turns, list):
        raise DataError(path, 'expected a list of {"speaker": "user"|"agent", "text": ...} turns')
    for i, turn in enumerate(turns, 1):
        try:
            Turn.model_validate(turn)
        except ValidationError as e:
            err = e.errors()[0]
            raise DataError(path, f"{'.'.join(map(str, err['loc'])) or 'turn'}: {err['msg']}",
                            record=f"turn {i}") from None
    try:
        check_conversation(turns)
    except ValueError as e:
        raise DataError(path, str(e)) from None
    return turns


def table(result: Result) -> str:
    """A ranked table: rank, score, passage id, title and the start of the text."""
    lines = [f"{'#':>3}  {'score':>7}  {'id':<14} passage"]
    for i, h in enumerate(result.results, 1):
        text = " ".join(f"{h.title}: {h.text}".split()) if h.title else " ".join(h.text.split())
        lines.append(f"{i:>3}  {h.score:7.3f}  {h.id:<14} {text[:SNIPPET]}{'...' if len(text) > SNIPPET else ''}")
    t = result.timing_ms
    lines.append(f"({len(result.results)} passages; encode {t['encode']:.1f} ms, search {t['search']:.1f} ms)")
    return "\n".join(lines)


def _open(run_dir: Path, backend: str = "auto", batching: BatchConfig | None = None) -> "Searcher":
    from disco.serving.search import Searcher

    print(f"loading {run_dir} ...", file=sys.stderr)
    searcher = Searcher.open(run_dir, backend=backend, batching=batching)
    print(f"searching with the {searcher.backend} backend", file=sys.stderr)
    return searcher


def search(run_dir: Path, conversation: Path | None, k: int, as_json: bool, backend: str = "auto") -> None:
    """The ranked passages for a conversation file, or a conversation typed turn by turn
    (disco/serving/interactive.py)."""
    from disco.serving import interactive

    turns = read_conversation(conversation) if conversation is not None else None
    try:
        searcher = _open(run_dir, backend)
    except (KeyboardInterrupt, Terminated):
        if turns is not None:
            raise  # a search given a file was interrupted: the command line says so (exit 130 / 143)
        print("stopped", file=sys.stderr)  # a session ended while it loaded
        return
    try:
        if turns is not None:
            got = searcher.search(turns, k)
            print(got.model_dump_json(indent=2, exclude_none=True) if as_json else table(got))
        else:
            interactive.run(searcher, k, lambda r: r.model_dump_json(exclude_none=True) if as_json else table(r))
    finally:
        searcher.close()


def serve(run_dir: Path, host: str, port: int, options: ServeOptions | None = None) -> None:
    """The HTTP service (disco/serving/service.py) until SIGTERM or Ctrl-C, which finish the requests in flight
    and end it with "stopped" and exit code 0. It answers at once; ``/health`` says ready when the model is
    loaded (in every worker process with ``workers`` > 1)."""
    from disco.serving.app import SearcherSlot, create_app
    from disco.serving.service import bind
    from disco.serving.service import serve as run_server

    opts = options or ServeOptions()
    follow = str(run_dir).startswith("registry:")
    if follow:
        from core.registry import parse_ref

        ref = parse_ref(str(run_dir))  # a malformed reference: one line before anything binds
        if opts.workers > 1 or opts.ray is not None:
            raise DiscoError("a registry model is served by one process (no --workers or --ray): it follows the "
                             "alias and swaps the student in place")
    sock = bind(host, port)  # before the model loads: a port in use is one line
    if not _loopback(host):
        print(f"warning: binding {host}: the service is reachable from other machines and has no "
              "authentication; use --host 127.0.0.1 unless that is what you want", file=sys.stderr)
    if not follow:
        run_paths(run_dir)  # a folder that is not a finished run: one line before serving anything
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    banner = f"disco serve: {url}/ (the search page), {url}/docs (the API); SIGTERM or Ctrl-C stops it"
    slot, stopped_by, follower = SearcherSlot(), None, None

    def load() -> None:
        slot.set(_open(run_dir, opts.backend, opts.batching))
        print(banner, file=sys.stderr, flush=True)

    if follow:
        from core.paths import ROOT
        from disco.serving.follow import Follower

        follower = Follower(ref, slot, ROOT / "runs" / "registry-cache", opts.registry_uri, opts.backend,
                            opts.batching, opts.poll_s)

        def load() -> None:  # noqa: F811 - the registry's student, then follow the alias
            follower.load()
            print(f"{banner}; serving {slot.label}, following {ref} every {opts.poll_s:g} s", file=sys.stderr,
                  flush=True)

    try:
        if opts.ray is not None:
            sock.close()  # Ray Serve's proxy binds it
            from disco.serving import ray_serve

            ray_serve.run(run_dir, host, port, opts.backend, opts.batching, opts.ray)
        elif opts.workers > 1:
            from disco.serving.workers import run_workers

            stopped_by = run_workers(Path(run_dir).resolve(), sock, opts.workers, opts.backend, opts.batching,
                                     banner, pin_cpus=opts.pin_cpus)
        else:
            stopped_by = run_server(create_app(slot), sock, load=load, slot=slot)
    except (KeyboardInterrupt, Terminated) as e:  # before the serving began, or Ray Serve's wait
        stopped_by = signal_name(e)
    finally:
        sock.close()
        if follower is not None:
            follower.stop()
        if slot.searcher is not None:
            slot.searcher.close()
    print(f"disco serve: stopped{f' ({stopped_by})' if stopped_by else ''}", file=sys.stderr)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def export(run_dir: Path, out_dir: Path) -> None:
    from disco.serving.export import export as write

    out = write(run_dir, out_dir)
    print(f"exported: {out}")
    if "splade" not in str(out.resolve()).lower():
        print("note: Pyserini's LuceneImpactSearcher picks its SPLADE encoder only when the path contains "
              "'splade': rename the folder (e.g. disco-splade-demo) to use it there", file=sys.stderr)
