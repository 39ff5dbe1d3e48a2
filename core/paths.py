"""Locations inside the repository (the embedded demo, the project's Prefect home)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_DATA = ROOT / "data" / "demo"
PREFECT_HOME = ROOT / ".prefect"
