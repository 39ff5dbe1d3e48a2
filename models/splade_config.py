"""Which SPLADE weights and how to run them: the encoder's settings, apart from :mod:`models.splade`.

Kept in a module of its own (no torch, no transformers) so that reading a configuration, or a fully cached run
that only checks stage keys, does not pay for importing them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SpladeConfig(BaseModel):
    """Which SPLADE weights and how to run them (paper: 256 tokens for queries and passages)."""

    model_config = ConfigDict(extra="forbid")

    model: str = "splade-tiny"
    query_max_length: int = 256
    doc_max_length: int = 256
    batch_size: int = 32
    quant_scale: int = 100
