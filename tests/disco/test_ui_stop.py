"""`disco ui` stopped the normal way (SIGTERM from a service manager, Ctrl-C in its terminal): the Prefect server
it started is stopped with it, it says "stopped", exits 0, and prints no error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.proc import stop_group

pytestmark = pytest.mark.slow
DISCO = str(Path(sys.executable).with_name("disco"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_ui_stops_on_a_signal_without_an_error(tmp_path, sig):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log = tmp_path / "ui.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([DISCO, "ui", "--port", str(port)], stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(1)
        proc.send_signal(sig)  # the `disco ui` process only, as systemd's or a shell's kill would
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            stop_group(proc, 10)
    text = log.read_text()
    assert code == 0, text
    assert f"Prefect UI: stopped ({signal.Signals(sig).name})" in text
    assert "error:" not in text and "Finished stages" not in text and "Traceback" not in text
    with pytest.raises(httpx.HTTPError):  # the Prefect server went with it
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
