"""Benchmarks (docs/benchmarks.md), run from the repository root as ``python -m benchmarks.<name>``; their shared
helpers are in :mod:`benchmarks.common`."""
