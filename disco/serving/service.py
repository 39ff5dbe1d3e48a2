"""Running ``disco serve``'s HTTP service: the port checked before anything loads, one access-log line per
request, and a stop on SIGTERM or Ctrl-C that finishes the requests in flight and exits 0.

- :func:`bind` takes the port first (before the model loads): a port in use or not ours to bind is one line
  naming it, exit 2, instead of a banner, a loaded model and then uvicorn's ``address already in use``. The
  bound socket is what uvicorn serves on, so nothing can take the port in between.
- :class:`AccessLog` (ASGI middleware) logs ``METHOD PATH STATUS MS`` for every request to the
  ``disco.serve.access`` logger, which :func:`serve` prints on stderr.
- :class:`Server` is uvicorn's, with its signal handling kept to the serving itself: SIGTERM (the normal way to
  stop a service) or SIGINT stops accepting, waits for the requests in flight (at most ``grace_s``), and returns
  the signal's name. uvicorn would raise the signal again afterwards, and the command line's handler
  (disco/shutdown.py) would then report a stopped service as an interrupted command.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Callable

import uvicorn

from core.errors import DiscoError

if TYPE_CHECKING:
    from disco.serving.app import SearcherSlot

ACCESS = logging.getLogger("disco.serve.access")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``, or a DiscoError naming the port and what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT is free
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise DiscoError(f"port {port} on {host} is already in use (another `disco serve`?): stop that service "
                             "or choose another port with --port") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise DiscoError(f"port {port} on {host}: permission denied (ports below 1024 need root): choose "
                             "another with --port") from None
        raise DiscoError(f"cannot listen on {host}:{port}: {e.strerror or e}; give an address of this machine "
                         "with --host") from None
    return sock


class AccessLog:
    """ASGI middleware: one line per HTTP request, ``METHOD PATH STATUS MS``, when its response is complete."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                ACCESS.info("%s %s %d %.1f ms", scope["method"], scope["path"], status[0],
                            1000 * (time.perf_counter() - t0))

        await self.app(scope, receive, sending)


class Server(uvicorn.Server):
    """uvicorn's server; a stop signal ends the serving (requests in flight finish) and is not raised again.

    With ``handoff`` (a worker of ``disco serve --workers N``, disco/serving/workers.py) it listens on no port: it
    serves the connections the command passes over that Unix socket, each with uvicorn's own HTTP protocol, and
    sends one byte back on it when one of them closes (the command counts each worker's open connections)."""

    stopped_by: str | None = None
    handoff: socket.socket | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.handoff is not None and not self.should_exit:
            self.handoff.setblocking(False)
            asyncio.get_running_loop().add_reader(self.handoff.fileno(), self._receive)

    async def shutdown(self, sockets=None) -> None:
        if self.handoff is not None:
            asyncio.get_running_loop().remove_reader(self.handoff.fileno())
        await super().shutdown(sockets=sockets)

    def _receive(self) -> None:
        """Serve the connections the command passed (a few at once when they arrived together)."""
        loop = asyncio.get_running_loop()
        try:
            _, fds, _, _ = socket.recv_fds(self.handoff, 64, 64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            fds = []
        if not fds:  # the command is gone or closed its end: no more connections come
            loop.remove_reader(self.handoff.fileno())
            return
        for fd in fds:
            loop.create_task(loop.connect_accepted_socket(self._protocol, socket.socket(fileno=fd)))

    def _protocol(self) -> asyncio.Protocol:
        """uvicorn's HTTP protocol (as its own server makes them), which tells the command when it closes."""
        protocol = self.config.http_protocol_class(config=self.config, server_state=self.server_state,
                                                   app_state=self.lifespan.state, _loop=asyncio.get_running_loop())
        lost = protocol.connection_lost

        def connection_lost(exc) -> None:
            lost(exc)
            with contextlib.suppress(OSError):
                self.handoff.send(b"x")

        protocol.connection_lost = connection_lost
        return protocol

    def handle_exit(self, sig: int, frame) -> None:
        if self.stopped_by is None:
            self.stopped_by = signal.Signals(sig).name
            print(f"stopping ({self.stopped_by}): finishing the requests in flight", file=sys.stderr, flush=True)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        before = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)


def log_access_to_stderr() -> logging.Handler:
    """Print the access log (``disco.serve.access``) on stderr, one timestamped line per request."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    ACCESS.addHandler(handler)
    ACCESS.setLevel(logging.INFO)
    ACCESS.propagate = False
    return handler


def serve(app, sock: socket.socket | None = None, grace_s: float = 30.0, load: Callable[[], None] | None = None,
          handoff: socket.socket | None = None, slot: "SearcherSlot | None" = None) -> str | None:
    """Serve ``app`` on ``sock`` (or the connections passed on ``handoff``, see :class:`Server`) until SIGTERM or
    SIGINT; returns the signal's name (None if it ended by itself).

    ``load`` (loading the model) runs on a thread beside the serving, so ``/health`` answers "loading" meanwhile;
    if it fails, the serving stops and its exception is raised here. Once it has loaded, every object then alive
    is left out of Python's cyclic garbage collection (``gc.freeze``): the model, tokenizer and libraries are some
    430,000 tracked objects, and one full collection over them took 203 ms, a stall of every request in flight.

    ``slot`` (the app's :class:`~disco.serving.app.SearcherSlot`): its searchers' batches learn how many
    connections are open (uvicorn's own count), so a batch with a request from each starts without waiting."""
    handler = log_access_to_stderr()
    host, port = sock.getsockname()[:2] if sock is not None else ("127.0.0.1", 1)  # handoff: the port is not ours
    config = uvicorn.Config(AccessLog(app), host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=grace_s)
    server = Server(config)
    server.handoff = handoff
    if slot is not None:  # HTTP/1.1 without pipelining: at most one request in flight per connection
        slot.senders = lambda: len(server.server_state.connections)
    failed: list[BaseException] = []

    def loading() -> None:
        try:
            load()
            gc.collect()
            gc.freeze()
        except BaseException as e:  # noqa: BLE001 - raised in the main thread below
            failed.append(e)
            server.should_exit = True

    loader = threading.Thread(target=loading, name="disco-load", daemon=True) if load else None
    try:
        if loader is not None:
            loader.start()
        server.run(sockets=[sock] if sock is not None else [])
    finally:
        if loader is not None:
            loader.join()
        ACCESS.removeHandler(handler)
        for own in (sock, handoff):
            if own is not None:
                own.close()
    if failed:
        raise failed[0]
    return server.stopped_by
