"""disco/serving is query-time code: it must not pull in Prefect, flows/ or tasks/."""

from __future__ import annotations

import subprocess
import sys


def test_serving_imports_no_prefect_flows_or_tasks():
    code = ("import sys, disco.serving.search, disco.serving.app, disco.serving.export, disco.serving.terminal; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'flows', 'tasks'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
