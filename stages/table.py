"""The README's stage table, generated from the declarations (`disco stages`; a test keeps the README equal)."""

from __future__ import annotations

from stages.graph import STAGES


def stage_table() -> str:
    rows = ["| stage | declared in | needs | reads (config) | what it does | outputs (under "
            "`<out>/stages/<stage>-<key>/`) |", "|---|---|---|---|---|---|"]
    for s in STAGES:
        outputs = ", ".join(f"`{p}/`" if "." not in p else f"`{p}`" for p in s.outputs.values())
        reads = ", ".join(f"`{r.partition(' as ')[0]}`" for r in s.reads)
        rows.append(f"| {s.name} | `{s.module.replace('.', '/')}.py` | {', '.join(s.upstream) or '-'} | "
                    f"{reads} | {s.summary} | {outputs} |")
    return "\n".join(rows)
