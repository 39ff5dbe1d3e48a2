"""Torch / transformers code of DiSCo: SPLADE encoders, losses, distillation, rewriter backends.

Nothing here imports Prefect: every function takes plain configs and paths, so it runs from a notebook,
a test or a Prefect task alike.
"""
