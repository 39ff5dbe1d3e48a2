"""SPLADE pooling without the [batch, length, vocabulary] logits: the vocabulary projection in chunks, with a
running max over the real (unpadded) tokens only.

SPLADE-max is ``rep[v] = log1p(relu(max_t logits[t, v]))`` over the text's tokens (log1p(relu(.)) is monotonic,
so the max can be taken first). With a 30,522-term vocabulary the projection ``logits = h W^T + b`` is almost all
of the arithmetic (SPLADE-tiny: 128 x 30,522 multiply-adds per token against about 16k for its two layers) and the
plain ``[B, L, V]`` tensor is about 1 GB for 32 passages of 256 tokens. Here the head's transform runs on the
padded batch as usual, then the unpadded tokens are packed (``h[mask]``) and projected one block of tokens x one
chunk of the vocabulary at a time (``F.linear`` on slices of the same weight and bias, the same operation as the
model's decoder), each block reduced by its max at once. Every logit of a real token is computed exactly as
``F.linear`` computes it on the whole matrix and the max is exact, so the result is the same as the plain path
(``tests/models/test_projection.py`` checks bit equality on SPLADE-tiny); padded positions cost nothing.

Works on BERT-style masked LMs (``cls.predictions.transform`` + ``decoder``) and DistilBERT-style ones
(``vocab_transform`` / ``vocab_layer_norm`` + ``vocab_projector``); :func:`head_parts` returns ``None`` for
anything else, and the caller falls back to the plain path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from models.screen import Int8Screen

# Vocabulary columns per chunk and tokens per block: a [block, chunk] float32 tile of 2 MiB stays in the
# core's L2 cache while its max is taken (measured on 2-core Xeon: see docs/benchmarks.md, issue 12).
CHUNK = 4096
BLOCK = 128
# BLAS picks another kernel (another summation order) for matrices of very few rows (5 or fewer on the machines
# measured), so a block of fewer rows is padded with zero rows to give exactly what the whole-batch product gives,
# and a whole batch of fewer rows (a query of a few tokens) is projected as the plain path does.
MIN_ROWS = 16
# A batch of at most this many real tokens (one query, a few short ones) is projected onto the whole vocabulary
# at once: one [tokens, 30,522] product (at most 31 MiB) instead of eight chunks. The chunks pay off for corpus
# batches; for a single query their eight BLAS calls (and thread wake-ups) cost more than the cache they save
# (benchmarks/query_path.py, docs/benchmarks.md). The result is the same bit for bit (chunk = vocabulary size is
# one of the sizes tests/models/test_projection.py checks).
WHOLE_VOCAB_TOKENS = 256


def head_parts(mlm: torch.nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.nn.Linear] | None:
    """(transform, decoder): the MLM head split just before its vocabulary projection, or ``None``."""
    pred = getattr(getattr(mlm, "cls", None), "predictions", None)
    if pred is not None and isinstance(getattr(pred, "decoder", None), torch.nn.Linear) \
            and hasattr(pred, "transform"):
        return pred.transform, pred.decoder
    if isinstance(getattr(mlm, "vocab_projector", None), torch.nn.Linear) and hasattr(mlm, "vocab_transform"):
        def transform(h: torch.Tensor) -> torch.Tensor:
            return mlm.vocab_layer_norm(mlm.activation(mlm.vocab_transform(h)))
        return transform, mlm.vocab_projector
    return None


def _blocks(lengths: list[int], block: int):
    """``(a, b, t, n)``: texts ``a..b-1``, whose tokens are rows ``t..t+n-1`` of the packed states, in blocks of
    about ``block`` tokens of whole texts (a text longer than ``block`` is a block of its own)."""
    a = t = 0
    while a < len(lengths):
        b, n = a + 1, lengths[a]
        while b < len(lengths) and n + lengths[b] <= block:
            n, b = n + lengths[b], b + 1
        yield a, b, t, n
        a, t = b, t + n


def _rows(tokens: torch.Tensor, n: int) -> torch.Tensor:
    """``tokens`` with zero rows added up to ``MIN_ROWS`` (see ``MIN_ROWS``)."""
    return torch.cat([tokens, tokens.new_zeros(MIN_ROWS - n, tokens.shape[1])]) if n < MIN_ROWS else tokens


def _reduce(tile: torch.Tensor, seg: list[int]) -> torch.Tensor:
    """Each text's column max of a ``[tokens, columns]`` tile (texts of ``seg`` tokens each, in order): one
    ``amax`` per text (``torch.segment_reduce`` gives the same maxima 4-20x slower on CPU, more on wide tiles)."""
    if len(seg) == 1:
        return tile.amax(dim=0, keepdim=True)
    rows, r = [], 0
    for n in seg:
        rows.append(tile[r:r + n].amax(dim=0))
        r += n
    return torch.stack(rows)


def _screened(tokens: torch.Tensor, n: int, seg: list[int], decoder: torch.nn.Linear,
              screen: "Int8Screen") -> tuple[torch.Tensor, torch.Tensor]:
    """(candidate ids, ``[texts, candidates]`` maxima) of one block: the exact logits of the screen's candidates,
    with the same ``F.linear`` on rows of the same weight (the ids unpadded; the rows gathered padded, ``Int8Screen.pad``)."""
    ids = screen.candidate_ids(tokens)
    cand = screen.pad(ids)
    # index_select: the same rows as weight[cand], without advanced indexing's set-up (6x faster for 640 rows)
    bias = None if decoder.bias is None else decoder.bias.index_select(0, cand)
    tile = F.linear(_rows(tokens, n), decoder.weight.index_select(0, cand), bias)[:n]
    return ids, _reduce(tile, seg)[:, :len(ids)]


def _screen_for(packed: torch.Tensor, screen: "Int8Screen | None") -> "Int8Screen | None":
    """``screen`` where its int8 kernels apply: float32 CPU states (not autocast's bf16, not a GPU)."""
    return None if screen is None or packed.device.type != "cpu" or packed.dtype != torch.float32 else screen


def max_logits(mlm: torch.nn.Module, batch: dict[str, torch.Tensor], chunk: int = CHUNK,
               block: int = BLOCK, hidden: torch.Tensor | None = None,
               screen: "Int8Screen | None" = None) -> torch.Tensor | None:
    """``max`` over the unpadded positions of the MLM logits, shape [B, V]; ``None`` if the head is unknown.
    ``hidden``: the states the head reads, when not the encoder's own (a residual branch's, models/branch.py).
    ``screen``: the decoder's :class:`~models.screen.Int8Screen`; each block of tokens is then projected exactly
    onto its candidate terms only, and every other term, whose max is certainly not positive, is 0 (so
    ``relu`` of the result is exact; the raw negative maxima are not kept).

    Inference only (call under ``torch.inference_mode`` / ``no_grad``); the training path keeps the plain
    differentiable computation.
    """
    parts = head_parts(mlm)
    if parts is None:
        return None
    transform, decoder = parts
    mask = batch["attention_mask"].bool()
    if hidden is None:
        hidden = mlm.base_model(**batch).last_hidden_state  # [B, L, H]
    states = transform(hidden)
    weight, bias = decoder.weight, decoder.bias
    if mask.numel() < MIN_ROWS:  # tiny: the plain computation, on the same few rows
        return F.linear(states, weight, bias).masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    packed = states[mask]  # [N, H]: the real tokens, text after text
    lengths = mask.sum(dim=1).tolist()
    vocab = weight.shape[0]
    if len(packed) <= WHOLE_VOCAB_TOKENS:
        chunk, block = vocab, max(block, len(packed))
    screen = _screen_for(packed, screen)
    out = (torch.zeros if screen is not None else torch.empty)((len(lengths), vocab), dtype=packed.dtype,
                                                               device=packed.device)
    # tokens in blocks of about `block`, whole texts per block, so each [tokens, chunk] tile reduces to its texts'
    # maxima at once
    for a, b, t, n in _blocks(lengths, block):
        tokens, seg = packed[t:t + n], lengths[a:b]
        if screen is not None:  # the candidate columns only
            ids, maxima = _screened(tokens, n, seg, decoder, screen)
            out[a:b, ids] = maxima
            continue
        tokens = _rows(tokens, n)
        for c0 in range(0, vocab, chunk):
            c1 = min(c0 + chunk, vocab)
            tile = F.linear(tokens, weight[c0:c1], None if bias is None else bias[c0:c1])[:n]
            out[a:b, c0:c1] = _reduce(tile, seg)
    return out


def positive_max_logits(mlm: torch.nn.Module, states: torch.Tensor, mask: torch.Tensor, screen: "Int8Screen",
                        block: int = BLOCK) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Each text's terms whose max logit is positive and those maxima, ``(ids, maxima)`` sorted by id: the
    non-zeros of :func:`max_logits` with ``screen`` and ``relu``, bit for bit, without the [B, V] matrix (a
    query's vector has a few dozen terms of 30,522). ``states``: the head's input [B, L, H] (the encoder's or a
    branch's last hidden states); ``None`` where the screen does not apply (unknown head, not float32 on a CPU).
    """
    parts = head_parts(mlm)
    if parts is None or mask.numel() < MIN_ROWS:  # tiny batches: max_logits projects them whole, unscreened
        return None
    transform, decoder = parts
    packed = transform(states)[mask.bool()]
    if _screen_for(packed, screen) is None:
        return None
    return screened_maxima(decoder, packed, mask.sum(dim=1).tolist(), screen, block)


def screened_maxima(decoder: torch.nn.Linear, packed: torch.Tensor, lengths: list[int], screen: "Int8Screen",
                    block: int = BLOCK) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`positive_max_logits` of packed head states (the MLM head's transform applied): ``packed`` [N, H]
    holds the texts' tokens one after the other, ``lengths`` tokens each (:mod:`models.packed`). Screened in
    blocks of about ``block`` tokens whatever their number: the screen's float tiles then stay in cache (a batch
    of 234 tokens: 2.65 ms in two blocks of 128 against 3.2 ms in one)."""
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    for a, b, t, n in _blocks(lengths, block):
        ids, maxima = _screened(packed[t:t + n], n, lengths[a:b], decoder, screen)
        for row in maxima:
            keep = row > 0
            out.append((ids[keep], row[keep]))
    return out
