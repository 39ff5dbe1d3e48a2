"""Ship a trained rewriter adapter as the project's packaged one (``data/rewriter/``, what ``rewriter.mode=packaged``
merges into the base LLM), with a card saying how to make it again.

    disco run demo --stage rewriter --out runs/rewriter-train --set rewriter.mode=train \\
        --set rewriter.steps=240 --set rewriter.eval_every=40
    .venv/bin/python scripts/package_rewriter.py runs/rewriter-train

The card (``disco_rewriter.json``) holds the stage's own card (configuration, examples per source, content hashes
of the public data files, dev F1 by step, the step kept, sample rewrites) plus the command above, the stage key and
the code version (git commit) it was trained at. The folder is replaced in one step.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from core.io import atomic_path, sha256_path, write_json
from core.paths import ROOT
from stages.rewriter import PACKAGED

COMMAND = ("disco run demo --stage rewriter --out runs/rewriter-train --set rewriter.mode=train "
           "--set rewriter.steps=240 --set rewriter.eval_every=40")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a `disco run ... --stage rewriter --set rewriter.mode=train` folder")
    ap.add_argument("--command", default=COMMAND, help="the command that trained it (default: the documented one)")
    args = ap.parse_args()
    found = sorted(args.run_dir.glob("stages/rewriter-*/adapter"), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit(f"error: {args.run_dir}: no stages/rewriter-*/adapter (train with rewriter.mode=train first)")
    adapter = found[-1]
    card = json.loads((adapter / "disco_rewriter.json").read_text(encoding="utf-8"))
    if card.get("mode") != "train":
        sys.exit(f"error: {adapter}: made in mode {card.get('mode')!r}, not trained")
    command = args.command
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    card.update({"packaged_from": {"stage": adapter.parent.name, "command": command, "code": commit,
                                   "adapter_sha256": sha256_path(adapter / "adapter_model.safetensors")}})
    with atomic_path(PACKAGED) as tmp:
        tmp.mkdir()
        config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = card["base"]  # a short name, not the training machine's path
        write_json(tmp / "adapter_config.json", config)
        for name in ("adapter_model.safetensors",):
            shutil.copy2(adapter / name, tmp / name)
            (tmp / name).chmod(0o644)
        write_json(tmp / "disco_rewriter.json", card)
    print(f"packaged {adapter} -> {PACKAGED} (step {card.get('best_step')}, dev F1 {card.get('dev_f1')})")


if __name__ == "__main__":
    main()
