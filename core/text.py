"""Text measures shared by the layers above: the bag-of-words token F1 of the query-rewriting literature."""

from __future__ import annotations

import re
from collections import Counter


def token_f1(prediction: str, reference: str) -> float:
    """Bag-of-words F1 between a rewrite and a reference rewrite (lower-cased, punctuation stripped)."""
    p = Counter(re.findall(r"\w+", prediction.lower()))
    r = Counter(re.findall(r"\w+", reference.lower()))
    common = sum((p & r).values())
    if not common:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)
