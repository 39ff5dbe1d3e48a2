"""``disco serve registry:NAME@ALIAS``: references are checked before anything binds, and a registry that does not
answer is one line naming it (the swap itself under load: tests/ops/test_continuous.py)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from core.errors import DiscoError
from core.registry import Ref, metric_name, parse_ref


def test_references_parse_or_fail_in_one_line():
    assert parse_ref("registry:disco-demo@production") == Ref("disco-demo", alias="production")
    assert parse_ref("registry:disco-demo/3") == Ref("disco-demo", version="3")
    assert str(parse_ref("registry:m@prod")) == "registry:m@prod"
    for bad in ("registry:", "registry:m", "registry:m@", "registry:m/x", "runs/demo"):
        with pytest.raises(DiscoError, match="registry:NAME@ALIAS"):
            parse_ref(bad)
    assert metric_name("test.disco.RR@10") == "test.disco.RR_at_10"


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "disco.cli", "serve", *args], capture_output=True, text=True,
                          timeout=120)


def test_serve_refuses_a_bad_reference_workers_and_a_silent_registry_in_one_line():
    r = _serve("registry:m@")
    assert r.returncode != 0 and "registry:NAME@ALIAS" in r.stderr and "Traceback" not in r.stderr
    r = _serve("registry:m@production", "--workers", "2")
    assert r.returncode != 0 and "one process" in r.stderr and "Traceback" not in r.stderr
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _serve("registry:m@production", "--registry-uri", f"http://127.0.0.1:{dead}", "--port", str(port))
    assert r.returncode != 0 and f"no MLflow server answers at http://127.0.0.1:{dead}" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
