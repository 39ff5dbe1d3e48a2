"""Whether this CPU computes bf16 natively, and the warning for bf16 asked of one that does not.

torch runs bf16 matmuls on CPU with AVX-512 BF16 / AMX instructions (x86) or the ``bf16`` extension (Arm); elsewhere
it converts to fp32 and back around every kernel, which is slower than fp32 itself. Measured on a 2-core AMD EPYC
without AVX-512 BF16 (docs/results.md, "Demo wall time"): SmolLM2-135M rewrote the 201 demo turns in 741 s in bf16
against 196 s in fp32; on a CPU with AVX-512 BF16 bf16 prefilled 1.8x faster than fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 flags, then Arm's "Features" entry


def native_bf16(cpuinfo: str | None = None) -> bool | None:
    """True / False from the CPU's flags (``/proc/cpuinfo`` unless ``cpuinfo`` is given); None where unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:  # not Linux: no flags to read
            return None
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if not flags:
        return None
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def slow_bf16_message(what: str, setting: str, cpuinfo: str | None = None) -> str | None:
    """The warning for bf16 on a CPU known to lack native bf16 (None when it has it or it cannot be told)."""
    if native_bf16(cpuinfo) is not False:
        return None
    return (f"{what}: bf16 on a CPU without AVX-512 BF16 / AMX is emulated and several times slower than fp32 "
            f"(set {setting} for speed)")


def warn_if_slow_bf16(what: str, setting: str) -> None:
    """Log :func:`slow_bf16_message` when it applies."""
    message = slow_bf16_message(what, setting)
    if message:
        log.warning(message)
