"""Run many `disco` commands, each in its own process, without each paying ~8 s of imports (torch, Prefect).

Started once by tests/disco/conftest.py as ``python tests/disco/forkcli.py`` in the environment of the commands:
it imports what `python -m disco.cli` imports for `run` and `evaluate`, then reads one JSON request a line
(``args``, ``env`` additions, ``cwd``, ``stdout``/``stderr`` file paths, ``fsize_kb``) and forks a child per
request that runs the command line (``disco.cli.app``) with its own stdout, stderr, environment, working folder
and exit code. It answers ``{"pid": ...}`` at the fork and ``{"code": ...}`` when the child has ended.
``DISCO_TEST_SPAWN=1`` makes the tests start a fresh interpreter per command instead.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# torch's and transformers' thread pools start lazily: importing them leaves no worker thread to break the fork
import disco.cli  # noqa: E402
import flows.pipeline  # noqa: E402,F401
import models.splade  # noqa: E402,F401
import retrieval.index.retrieve  # noqa: E402,F401


def child(req: dict) -> int:
    os.setsid()  # its own process group, as a command started from a shell
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    os.environ.update(req.get("env", {}))
    os.chdir(req["cwd"])
    if req.get("fsize_kb") is not None:
        limit = req["fsize_kb"] * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.argv = ["disco", *req["args"]]
    try:
        disco.cli.app(req["args"], prog_name="disco")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 (what a crashing interpreter would print)
        traceback.print_exc()
        return 1


def main() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(req)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
