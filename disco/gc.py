"""``disco gc RUN_DIR``: free the disk space a run folder no longer needs.

A run folder keeps every stage folder it ever built (``stages/<stage>-<key>/``): changing a setting builds new
ones beside the old, and a killed process leaves temporary folders (``.<name>.*.tmp``). This removes

- stage folders that no cache entry (``cache/<stage>-<key>``, Prefect's stored results) and not the last run's
  record (``run.json``) refer to; with ``--only-last-run``, every stage folder the last run did not use, and the
  cache entries pointing at them (a later run with other settings then recomputes those stages);
- temporary folders left by killed processes.

It is a dry run unless ``--yes`` is given; it prints what it would remove and the sizes. It holds the folder's run
lock (core/lock.py) while it works, so it never removes anything a running `disco run` is writing.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from core.errors import DataError, DiscoError
from core.io import run_temporaries, size_of
from core.lock import run_lock
from core.run_record import RunRecord


@dataclass
class Item:
    path: Path
    bytes: int
    why: str


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _last_run(run_dir: Path) -> set[str]:
    if not RunRecord.path(run_dir).exists():
        return set()
    try:
        return {Path(m.dir).name for m in RunRecord.read(run_dir).stages.values()}
    except DataError as e:
        raise DataError(e.path, f"{e.problem}; gc cannot tell which stages the last run used without it: rerun "
                        "the run, or delete run.json to keep only cached stages") from None


def plan(run_dir: Path, only_last_run: bool = False) -> tuple[list[Item], list[Item]]:
    """(what to remove, stage folders kept), each with its size."""
    used = _last_run(run_dir)
    cache = run_dir / "cache"
    entries = {p.name: p for p in cache.iterdir() if p.is_file()} if cache.is_dir() else {}
    if only_last_run and not used:
        raise DiscoError(f"{run_dir}: no run.json, so no last run to keep: drop --only-last-run")
    remove, keep = [], []
    for folder in sorted((run_dir / "stages").glob("*-*")) if (run_dir / "stages").is_dir() else []:
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        size = size_of(folder)[1]
        if folder.name in used or (not only_last_run and folder.name in entries):
            keep.append(Item(folder, size, "used by the last run" if folder.name in used else "cached"))
        else:
            remove.append(Item(folder, size, "not used by the last run" if only_last_run else "no cache entry"))
            if folder.name in entries:
                remove.append(Item(entries[folder.name], entries[folder.name].stat().st_size, "its cache entry"))
    for tmp in run_temporaries(run_dir):
        remove.append(Item(tmp, size_of(tmp)[1], "temporary folder of a killed process"))
    return remove, keep


def gc(run_dir: Path, yes: bool = False, only_last_run: bool = False, echo=print) -> int:
    """Print (and with ``yes``, remove) what :func:`plan` finds; return the bytes freed (or to free)."""
    run_dir = run_dir.resolve()
    if not run_dir.is_dir() or not ((run_dir / "stages").is_dir() or RunRecord.path(run_dir).exists()):
        raise DiscoError(f"{run_dir} is not a run folder (no stages/ or run.json): pass the --out of a `disco run`")
    with run_lock(run_dir):
        remove, keep = plan(run_dir, only_last_run)
        for item in keep:
            echo(f"keep    {_human(item.bytes):>9}  {item.path.relative_to(run_dir)}  ({item.why})")
        for item in remove:
            echo(f"{'remove' if yes else 'would remove'}  {_human(item.bytes):>9}  "
                 f"{item.path.relative_to(run_dir)}  ({item.why})")
            if yes:
                if item.path.is_dir():
                    shutil.rmtree(item.path)
                else:
                    item.path.unlink(missing_ok=True)
        total = sum(i.bytes for i in remove)
        echo(f"{'freed' if yes else 'would free'} {_human(total)} "
             f"({len(remove)} items){'' if yes else '; pass --yes to remove them'}")
    return total
