"""Many texts through BERT in one pass, without padding: the search service's batches (issue 28).

The service encodes the conversations of concurrent requests together. Padded, a batch of 8 conversations of 7 to
66 tokens is a forward pass per padded length (3.7 per batch on the demo), each paying the per-call cost of some
fifty kernels, and a fifth of the rows are padding. Here the texts' tokens are packed one after the other into one
``[N, H]`` matrix: every row-wise step (embeddings, the linear layers, LayerNorm, GELU, the MLM head's transform,
the screened vocabulary projection of :mod:`models.projection`) runs once over all the rows, and only attention
runs per text, over that text's own tokens (``scaled_dot_product_attention`` with no mask: nothing is padded).
This is the "remove padding" layout of packed BERT inference (e.g. NVIDIA FasterTransformer's effective
transformer, and variable-length attention in FlashAttention), with the per-text attention left to PyTorch's kernel.

A text's rows get the same arithmetic whatever is packed beside it: the matrix products compute each row the same
way for any number of rows from ``MIN_ROWS`` up (so a pack of fewer rows gets a filler segment of padding tokens,
computed and dropped), and attention sees only the text's own tokens. So a conversation's vector is the same bit
for bit alone or in any batch (``tests/models/test_packed.py``), and a text of ``MIN_ROWS`` tokens or more alone
gets exactly transformers' unpadded states. It is not the padded forward's floats (padding changes SDPA's arithmetic
in the last bits); the quantised query vectors of the demo's 201 turns are the same either way.

Only for what :mod:`models.lean_bert` reproduces (a BERT in eval mode, SDPA, exact GELU); the caller falls back to
padded batches otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from models import lean_bert
from models.projection import MIN_ROWS


@dataclass
class Packed:
    """Token rows of several texts one after the other (``lengths``), as BERT's embeddings read them; the first
    ``texts`` segments are the texts, a last one may be filler (see the module)."""

    ids: torch.Tensor  # [N] token ids
    types: torch.Tensor  # [N] token type ids
    positions: torch.Tensor  # [N] each token's position in its own text
    lengths: list[int]
    texts: int

    @property
    def tokens(self) -> int:
        """Rows of the texts (without the filler)."""
        return sum(self.lengths[:self.texts])


def pack(input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]] | None = None,
         pad_id: int = 0) -> Packed:
    """The unpadded rows of a tokenizer's output (``tokenizer(texts)["input_ids"]``, no padding) packed."""
    lengths = [len(row) for row in input_ids]
    if not lengths or min(lengths) < 1:
        raise ValueError("pack() needs at least one text, each of at least one token")
    ids = [t for row in input_ids for t in row]
    types = [0] * len(ids) if token_type_ids is None else [t for row in token_type_ids for t in row]
    texts, filler = len(lengths), MIN_ROWS - len(ids)
    if filler > 0:  # too few rows: BLAS would take another kernel (see models/projection.py, MIN_ROWS)
        ids, types, lengths = ids + [pad_id] * filler, types + [0] * filler, lengths + [filler]
    positions = torch.cat([torch.arange(n) for n in lengths])
    return Packed(torch.tensor(ids), torch.tensor(types), positions, lengths, texts)


def layer(block: torch.nn.Module, x: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """One ``BertLayer`` over packed rows ``x`` [N, H]: attention within each segment of ``lengths``."""
    att = block.attention.self
    heads, size = att.num_attention_heads, att.attention_head_size
    q, k, v = (F.linear(x, lin.weight, lin.bias) for lin in (att.query, att.key, att.value))
    parts, r = [], 0
    for n in lengths:
        def split(t: torch.Tensor) -> torch.Tensor:
            return t[r:r + n].view(1, n, heads, size).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v), dropout_p=0.0, scale=att.scaling,
                                             is_causal=False)
        parts.append(out.transpose(1, 2).reshape(n, heads * size))
        r += n
    return lean_bert.after_attention(block, torch.cat(parts) if len(parts) > 1 else parts[0], x)


def layers(blocks, x: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """``blocks`` (BertLayers) one after the other over packed rows."""
    for block in blocks:
        x = layer(block, x, lengths)
    return x


def hidden_states(mlm: torch.nn.Module, packed: Packed) -> torch.Tensor | None:
    """The encoder's last hidden states of every packed row, ``[N, H]`` (filler included), or ``None`` where
    :func:`models.lean_bert.supported` says no."""
    if not lean_bert.supported(mlm):
        return None
    bert = mlm.base_model
    x = lean_bert.embed(bert.embeddings, packed.ids, packed.types, packed.positions)
    return layers(bert.encoder.layer, x, packed.lengths)
