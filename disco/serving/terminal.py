"""What ``disco search``, ``disco serve`` and ``disco export`` do (disco/cli.py only parses arguments)."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import DataError, DiscoError
from disco.serving.search import Result, Searcher, Turn, check_conversation

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


def _open(run_dir: Path, backend: str = "auto") -> Searcher:
    print(f"loading {run_dir} ...", file=sys.stderr)
    searcher = Searcher.open(run_dir, backend=backend)
    print(f"searching with the {searcher.backend} backend", file=sys.stderr)
    return searcher


def search(run_dir: Path, conversation: Path | None, k: int, as_json: bool, backend: str = "auto") -> None:
    turns = read_conversation(conversation) if conversation is not None else None
    searcher = _open(run_dir, backend)
    try:
        if turns is not None:
            got = searcher.search(turns, k)
            print(got.model_dump_json(indent=2, exclude_none=True) if as_json else table(got))
        else:
            interactive(searcher, k, as_json)
    finally:
        searcher.close()


def interactive(searcher: Searcher, k: int, as_json: bool) -> None:
    """Read user turns; after each, show the passages and ask for the agent's reply (Enter: the top passage)."""
    print("Type a question (empty line or Ctrl-D ends, /new starts a new conversation).", file=sys.stderr)
    turns: list[dict[str, str]] = []
    while True:
        question = _ask("you> ")
        if not question:
            return
        if question == "/new":
            turns = []
            continue
        turns.append({"speaker": "user", "text": question})
        got = searcher.search(turns, k)
        print(got.model_dump_json(exclude_none=True) if as_json else table(got), flush=True)
        reply = _ask("agent> (Enter: the top passage stands in) ")
        top = got.results[0].text if got.results else ""
        if reply or top:
            turns.append({"speaker": "agent", "text": reply or top})


def _ask(prompt: str) -> str:
    print(prompt, end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    return line.strip()


def serve(run_dir: Path, host: str, port: int, backend: str = "auto") -> None:
    import uvicorn

    from disco.serving.app import create_app

    if not _loopback(host):
        print(f"warning: binding {host}: the service is reachable from other machines and has no "
              "authentication; use --host 127.0.0.1 unless that is what you want", file=sys.stderr)
    searcher = _open(run_dir, backend)
    try:
        print(f"disco search: http://{host}:{port}/  (API docs: /docs)", file=sys.stderr)
        uvicorn.run(create_app(searcher), host=host, port=port, log_level="warning")
    finally:
        searcher.close()


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
