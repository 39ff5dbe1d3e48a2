"""``disco search RUN_DIR`` without ``--conversation``: a conversation typed turn by turn in the terminal.

At ``you>`` a question is searched and the ranked passages are printed (stdout); at ``agent>`` the agent's reply
is typed, or Enter lets the top passage stand as the agent's turn, and the line after says which passage that
is. Commands at ``you>``: ``/show N`` prints passage N of the last results whole (the table cuts them),
``/new`` starts a new conversation, ``/help``; an empty line, Ctrl-D or Ctrl-C ends the session (exit 0: ending
it is not an error). Prompts and notices go to stderr, so stdout holds only results.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from typing import Callable

from disco.serving.search import Hit, Result, Searcher
from core.proc import Terminated

HELP = ("Type a question and Enter. Then at agent>, the agent's reply, or Enter to let the top passage stand in.\n"
        "  /show N  print passage N of the last results whole\n"
        "  /new     start a new conversation\n"
        "  /help    this text\n"
        "An empty line, Ctrl-D or Ctrl-C ends.")


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ask(prompt: str) -> str:
    """A line typed after ``prompt``; "" at end of input."""
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip()


def one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def whole(i: int, hit: Hit) -> str:
    """Passage ``i`` of the results, whole, wrapped to the terminal's width."""
    width = min(shutil.get_terminal_size((100, 24)).columns, 120)
    head = f"#{i}  {hit.id}  (score {hit.score:.3f})" + (f"\n{hit.title}" if hit.title else "")
    return head + "\n" + textwrap.fill(" ".join(hit.text.split()), width)


def show(arg: str, last: Result | None) -> str | None:
    """The text of ``/show N``, or None after a note saying why there is none."""
    if last is None or not last.results:
        note("no results yet: ask a question first")
        return None
    try:
        i = int(arg)
        hit = last.results[i - 1] if i >= 1 else None
    except (ValueError, IndexError):
        hit = None
    if hit is None:
        note(f"/show N: N is a rank between 1 and {len(last.results)}")
        return None
    return whole(i, hit)


def run(searcher: Searcher, k: int, render: Callable[[Result], str]) -> None:
    """The session; Ctrl-C or SIGTERM end it like Ctrl-D."""
    note(HELP)
    try:
        converse(searcher, k, render)
    except (KeyboardInterrupt, Terminated):
        note("\nstopped")


def converse(searcher: Searcher, k: int, render: Callable[[Result], str]) -> None:
    turns: list[dict[str, str]] = []
    last: Result | None = None
    while True:
        question = ask("you> ")
        if not question:
            return
        command, _, arg = question.partition(" ")
        if command == "/new":
            turns, last = [], None
            note("new conversation")
            continue
        if command == "/help":
            note(HELP)
            continue
        if command == "/show":
            text = show(arg.strip(), last)
            if text:
                print(text, flush=True)
            continue
        turns.append({"speaker": "user", "text": question})
        last = searcher.search(turns, k)
        print(render(last), flush=True)
        reply = ask("agent> (Enter: the top passage stands in) ")
        if reply:
            turns.append({"speaker": "agent", "text": reply})
        elif last.results:
            top = last.results[0]
            turns.append({"speaker": "agent", "text": top.text})
            note(f"agent's turn: passage #1 {top.id}: {one_line(top.text, 90)}  (/show 1 prints it whole)")
        else:
            note("agent's turn: none (no passage found)")
