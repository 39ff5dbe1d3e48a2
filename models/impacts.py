"""Quantised impacts of many passages at once: :func:`models.splade.quantise_sparse` on flat Arrow arrays.

The impact index keeps ``round(w * scale)`` of each SPLADE weight and drops the non-positive ones. Reading a vector
file (``term_ids`` / ``weights`` list columns) row by row into Python lists costs an object per weight; this does the
same rounding on one record batch's flattened arrays. numpy and pyarrow only: the searcher's and the stages'
configuration modules import it without torch.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def quantise_lists(term_ids: pa.Array, weights: pa.Array, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kept impacts per row [int64], kept term ids [int32], kept impacts [int32]) of list arrays with one row per
    passage: the rows' kept entries follow one another in row order, as ``quantise_sparse`` returns them per row."""
    lengths = pc.list_value_length(term_ids).to_numpy(zero_copy_only=False).astype(np.int64)
    terms = pc.list_flatten(term_ids).to_numpy(zero_copy_only=False).astype(np.int32)
    q = np.rint(pc.list_flatten(weights).to_numpy(zero_copy_only=False).astype(np.float64) * scale).astype(np.int32)
    keep = q > 0
    rows = np.repeat(np.arange(len(lengths)), lengths)[keep]
    return np.bincount(rows, minlength=len(lengths)), terms[keep], q[keep]
