"""The Parquet tables every stage reads and writes. One schema per table, checked on write.

Turn ids are strings unique across the dataset; a conversation's turns are numbered from 1.
``history`` holds the earlier exchanges, oldest first, as (role, text) with role "user" or "agent".
"""

from __future__ import annotations

import pyarrow as pa

HISTORY = pa.list_(pa.struct([("role", pa.string()), ("text", pa.string())]))

TURNS = pa.schema(
    [
        ("turn_id", pa.string()),
        ("conversation_id", pa.string()),
        ("turn", pa.int32()),
        ("question", pa.string()),
        ("history", HISTORY),
        ("answer", pa.string()),  # the system's answer to this turn (nullable); privileged information
        ("human_rewrite", pa.string()),  # nullable
        ("split", pa.string()),  # "train" | "test" (| "dev")
    ]
)

CORPUS = pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())])

QRELS = pa.schema([("turn_id", pa.string()), ("doc_id", pa.string()), ("relevance", pa.int32())])

REWRITES = pa.schema(
    [
        ("turn_id", pa.string()),
        ("teacher", pa.string()),
        ("rewrite", pa.string()),
        ("prompt_hash", pa.string()),
    ]
)

RUNS = pa.schema(
    [
        ("turn_id", pa.string()),
        ("doc_id", pa.string()),
        ("system", pa.string()),
        ("score", pa.float64()),
        ("rank", pa.int32()),
    ]
)

DOC_VECTORS = pa.schema(
    [
        ("doc_id", pa.string()),
        ("term_ids", pa.list_(pa.int32())),
        ("weights", pa.list_(pa.float32())),
    ]
)
