"""The team server on PostgreSQL: the session's Prefect server (conftest.py) runs on the cluster that
``scripts/postgres.sh`` starts whenever PostgreSQL is available, and the deployments and the demo run served
through it are rows of that database. Skipped, with the reason, where PostgreSQL cannot be started (or with
DISCO_TEST_DB=sqlite); the other operations tests then run on SQLite, the zero-setup default."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.slow  # a Prefect server on PostgreSQL and the served demo run: minutes


def _sql(db_url: str, query: str) -> list[str]:
    u = urlparse(db_url.replace("postgresql+asyncpg", "postgresql"))
    psql = shutil.which("psql") or "/usr/bin/psql"
    r = subprocess.run([psql, "-h", u.hostname, "-p", str(u.port), "-U", u.username, "-d", u.path.lstrip("/"),
                        "-tAc", query], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_server_on_postgres_holds_the_deployments_and_the_run(ops_server, deployed_run):
    db_url = ops_server["db_url"]
    if not db_url:
        pytest.skip("PostgreSQL is unavailable (scripts/postgres.sh could not start it; `make postgres` installs "
                    "Debian's postgresql as root) or DISCO_TEST_DB=sqlite: the server ran on SQLite")
    assert db_url.startswith("postgresql+asyncpg://")
    names = set(_sql(db_url, "SELECT name FROM deployment"))
    assert {"pipeline", "ingest", "rewrite", "index", "teacher", "distill", "evaluate"} <= names
    run_id = str(deployed_run["flow_run"].id)
    assert _sql(db_url, f"SELECT state_type FROM flow_run WHERE id = '{run_id}'") == ["COMPLETED"]
    # the stage tasks of its subflow, and their artifacts, are stored there too
    stages = {name.rsplit("-", 1)[0] for name in _sql(db_url, "SELECT name FROM task_run")}
    assert {"ingest", "rewrite", "index", "teacher", "distill", "evaluate"} <= stages
    kinds = _sql(db_url, "SELECT DISTINCT type FROM artifact")
    assert {"table", "markdown"} <= set(kinds)
    # and the server's home holds no SQLite database
    assert not (Path(ops_server["env"]["PREFECT_HOME"]) / "prefect.db").exists()
