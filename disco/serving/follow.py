"""``disco serve registry:NAME@production``: serve the student a registry alias names, and follow the alias.

The version the alias names is downloaded from the MLflow registry (core/registry.py) into a local cache and
opened with the index and corpus its lineage records (the model version's ``index`` and ``corpus`` tags). A
thread checks the alias every ``poll_s`` seconds; when it names another version, that student is loaded beside
the serving one and swapped in (:meth:`disco.serving.app.SearcherSlot.swap`): requests queued before the swap
are answered by the old student, later ones by the new one, none is dropped. A failure to load a new version is
one line on stderr, and the service keeps answering with the old student (tried again at the next check).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from core.errors import DiscoError
from core.registry import Ref, Registry, Version
from disco.serving.batching import BatchConfig


class Follower:
    """Keeps ``slot`` on the version ``ref`` names."""

    def __init__(self, ref: Ref, slot, cache: str | Path, registry_uri: str | None = None, backend: str = "auto",
                 batching: BatchConfig | None = None, poll_s: float = 10.0):
        self.ref, self.slot, self.cache = ref, slot, Path(cache)
        self.registry = Registry(ref.name, registry_uri)
        self.backend, self.batching, self.poll_s = backend, batching, poll_s
        self.version: Version | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Version:
        v = self.registry.resolve(self.ref)
        if v is None:
            raise DiscoError(f"{self.ref}: the registry at {self.registry.uri} has no such model version yet (run the "
                             "continuous deployment first, or name an existing alias or version)")
        return v

    def open(self, version: Version):
        """A searcher of ``version``'s student on the index and corpus its lineage names."""
        from disco.serving.search import Searcher

        missing = [f"{tag} ({version.tags.get(tag)})" for tag in ("index", "corpus")
                   if not version.tags.get(tag) or not Path(version.tags[tag]).exists()]
        if missing:
            raise DiscoError(f"{version.label}: its lineage names no index or corpus found here: {', '.join(missing)}")
        student = self.registry.download(version, self.cache)
        return Searcher(student, version.tags["index"], version.tags["corpus"], backend=self.backend,
                        batching=self.batching)

    def load(self) -> None:
        """Load the version the reference names now and start following it."""
        self.registry.check()
        version = self.current()
        self.slot.set(self.open(version), f"{version.label}")
        self.version = version
        self._thread = threading.Thread(target=self._loop, name="disco-follow", daemon=True)
        self._thread.start()

    def check(self) -> bool:
        """One check of the alias: swap to the version it names if that is another; True when swapped."""
        version = self.current()
        if self.version is not None and version.version == self.version.version:
            return False
        searcher = self.open(version)
        before = self.version.label if self.version else "none"
        self.slot.swap(searcher, version.label)
        self.version = version
        print(f"disco serve: {self.ref} moved from {before} to {version.label}: swapped (requests in flight were "
              "answered by the previous student)", file=sys.stderr, flush=True)
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check()
            except Exception as e:  # noqa: BLE001 - the service keeps its student and tries again
                print(f"disco serve: following {self.ref}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                      " (still serving " f"{self.version.label if self.version else 'nothing'})", file=sys.stderr,
                      flush=True)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
