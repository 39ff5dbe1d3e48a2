"""BERT's encoder for inference without the module machinery: the same kernels on the same tensors, bit for bit.

A query of SPLADE-tiny (2 layers of 128 units) is a few hundred microseconds of arithmetic, and transformers'
``BertModel.forward`` adds about as much again in Python: some twenty ``nn.Module`` calls per layer, keyword
plumbing, the attention-interface lookup and the mask factory (issue 28: the search service spends a third of its
CPU there at 16 clients). :func:`hidden_states` computes ``mlm.base_model(**batch).last_hidden_state`` with the
functional calls those modules make, in the same order: embeddings (word + token type, then + position, then
LayerNorm), and per layer the query / key / value projections, ``scaled_dot_product_attention`` with the boolean
padding mask transformers builds for SDPA (none when nothing is padded), output projection + residual +
LayerNorm, and the feed-forward block. Dropout is the identity in eval mode, so it is left out.

Only what was checked is taken: a BERT (``model_type == "bert"``) in eval mode, not a decoder, absolute positions,
no feed-forward chunking, SDPA attention, exact GELU everywhere (:func:`supported`); anything else is ``None`` and
the caller runs transformers' own forward. ``tests/models/test_lean_bert.py`` checks bit equality against
transformers on padded and unpadded batches, SPLADE-tiny and a student with a residual branch
(:mod:`models.branch`, whose layers :func:`layers` runs too).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _exact_gelu(act: object) -> bool:
    return type(act).__name__ == "GELUActivation" and getattr(act, "act", None) is F.gelu


def supported_blocks(config, blocks, training: bool = False) -> bool:
    """Whether :func:`layers` runs these BertLayers of ``config`` exactly as transformers does (eval mode)."""
    if config is None or blocks is None or training or getattr(config, "model_type", None) != "bert":
        return False
    if config.is_decoder or config.add_cross_attention or getattr(config, "chunk_size_feed_forward", 0) \
            or getattr(config, "_attn_implementation", None) != "sdpa" \
            or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False
    return all(_exact_gelu(block.intermediate.intermediate_act_fn) for block in blocks)


def supported(mlm: torch.nn.Module) -> bool:
    """Whether :func:`hidden_states` reproduces ``mlm.base_model`` exactly (see the module)."""
    bert = getattr(mlm, "base_model", None)
    blocks = getattr(getattr(bert, "encoder", None), "layer", None)
    return supported_blocks(getattr(mlm, "config", None), blocks, mlm.training) and hasattr(bert, "embeddings")


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The mask transformers gives SDPA for a bidirectional encoder: ``None`` without padding, else a boolean
    ``[B, 1, L, L]`` (a key is visible when it is a real token)."""
    if bool(attention_mask.all()):
        return None
    b, n = attention_mask.shape
    return attention_mask.bool()[:, None, None, :].expand(b, 1, n, n)


def _norm(ln: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


def layer(block: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One ``BertLayer`` in eval mode: ``LN(a + FFN(a))`` with ``a = LN(x + Attention(x))``."""
    att = block.attention.self
    b, n, _ = x.shape
    heads, size = att.num_attention_heads, att.attention_head_size

    def split(lin: torch.nn.Linear) -> torch.Tensor:
        return F.linear(x, lin.weight, lin.bias).view(b, n, heads, size).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(att.query), split(att.key), split(att.value), attn_mask=mask,
                                         dropout_p=0.0, scale=att.scaling, is_causal=False)
    out = out.reshape(b, -1, n, size).transpose(1, 2).contiguous().reshape(b, n, -1).contiguous()
    return after_attention(block, out, x)


def after_attention(block: torch.nn.Module, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The rest of a ``BertLayer`` once attention gave ``out`` for the layer's input ``x``: output projection +
    residual + LayerNorm, then the feed-forward block (row by row: any leading shape)."""
    so = block.attention.output
    a = _norm(so.LayerNorm, F.linear(out, so.dense.weight, so.dense.bias) + x)
    mid = block.intermediate
    h = F.gelu(F.linear(a, mid.dense.weight, mid.dense.bias))  # exact GELU, as supported_blocks checked
    fo = block.output
    return _norm(fo.LayerNorm, F.linear(h, fo.dense.weight, fo.dense.bias) + a)


def layers(blocks, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``blocks`` (BertLayers) one after the other over ``x`` with the padding of ``attention_mask`` [B, L]."""
    mask = padding_mask(attention_mask)
    for block in blocks:
        x = layer(block, x, mask)
    return x


def hidden_states(mlm: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """``mlm.base_model(**batch).last_hidden_state`` (``input_ids``, ``attention_mask``, optional
    ``token_type_ids``), or ``None`` when :func:`supported` says no."""
    if not supported(mlm) or set(batch) - {"input_ids", "attention_mask", "token_type_ids"}:
        return None
    bert = mlm.base_model
    emb = bert.embeddings
    ids = batch["input_ids"]
    n = ids.shape[1]
    positions = emb.position_ids[:, :n]
    types = batch.get("token_type_ids")
    if types is None:  # transformers' buffer of zeros, as BertEmbeddings takes it
        types = emb.token_type_ids[:, :n].expand(ids.shape[0], n)
    return layers(bert.encoder.layer, embed(emb, ids, types, positions), batch["attention_mask"])


def embed(emb: torch.nn.Module, ids: torch.Tensor, types: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``BertEmbeddings`` in eval mode: word + token type, then + position, then LayerNorm (any leading shape)."""
    x = F.embedding(ids, emb.word_embeddings.weight) + F.embedding(types, emb.token_type_embeddings.weight)
    return _norm(emb.LayerNorm, x + F.embedding(positions, emb.position_embeddings.weight))
