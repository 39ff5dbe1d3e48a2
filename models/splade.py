"""SPLADE encoder: rep(text) = max over tokens of log(1 + relu(MLM logits)), masked by attention.

Formal et al., "SPLADE v2" (arXiv 2109.10086), as used by DiSCo (Lupart et al., SIGIR 2025, arXiv
2410.14609): one vector over the 30,522-term BERT vocabulary per text, score = dot product.
log1p(relu(.)) is monotonic, so the max is taken over the raw logits first; padded positions are left out of the
max, which equals masking the rep by 0. For inference (no gradient) the vocabulary projection runs in chunks over
the unpadded tokens only (:mod:`models.projection`), so the [B, L, V] logits never exist; training keeps the
plain differentiable path. Both give the same vectors (tests/models/test_projection.py).

The same class serves the frozen document / teacher encoder (:meth:`SpladeEncoder.frozen`) and the trained
student (a fresh copy). Impact indexes (Pyserini ``JsonVectorCollection --impact --pretokenized``) need
positive integers: :func:`quantise`, :func:`quantise_sparse` and :func:`impact_vector` do that (x100, rounded).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from core.io import atomic_path
from models import lean_bert, packed
from models.branch import ResidualBranch
from models.projection import head_parts, max_logits, positive_max_logits, screened_maxima
from models.splade_config import SpladeConfig  # noqa: F401  (defined there, without torch; imported from here too)
from models.weights import resolve

# A fast tokenizer keeps its truncation side and length as state (set per call, in Python and in Rust), so calls
# with different settings from several threads (the HTTP service shares one encoder) must not interleave.
_TOKENIZE = threading.Lock()

SparseVec = tuple[np.ndarray, np.ndarray]  # (term_ids int32 sorted ascending, weights float32 > 0)


class SpladeEncoder(torch.nn.Module):
    """A SPLADE-max encoder over ``AutoModelForMaskedLM``; ``name`` is a short name, a folder or a hub id.

    ``extra_layers > 0`` gives a fresh student a residual branch of that many layers (:mod:`models.branch`; the
    same vectors as without it until trained); a folder saved with a branch loads it by itself.
    """

    def __init__(self, name: str = "splade-tiny", *, frozen: bool = False, extra_layers: int = 0):
        super().__init__()
        ref = resolve(name)
        self.name = name
        self.mlm = AutoModelForMaskedLM.from_pretrained(ref.path, **ref.kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(ref.path, **ref.kwargs)
        self.branch = ResidualBranch.load(self.mlm, ref.path) if Path(ref.path).is_dir() else None
        if extra_layers and self.branch is None:
            self.branch = ResidualBranch(self.mlm, extra_layers)
        elif extra_layers and self.branch.depth != extra_layers:
            raise ValueError(f"{name} has a residual branch of {self.branch.depth} layers, not {extra_layers}")
        self.is_frozen = False
        self.screen_terms = True  # frozen: project only the terms an int8 screen cannot rule out (models/screen.py)
        self._screens: dict[int, tuple] = {}  # id(terms) -> (weights' version, terms, screen)
        self.eval()  # inference by default; training code calls .train()
        if frozen:
            self.frozen()

    @property
    def extra_layers(self) -> int:
        """Layers of the residual branch (0: the plain encoder)."""
        return self.branch.depth if self.branch is not None else 0

    @property
    def vocab_size(self) -> int:
        return int(self.mlm.config.vocab_size)

    def frozen(self) -> "SpladeEncoder":
        """Eval mode (no dropout) and no gradients: the document / teacher side of DiSCo."""
        self.is_frozen = True
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def screen(self, terms: torch.Tensor | None = None):
        """The decoder's :class:`~models.screen.Int8Screen` for a frozen encoder (of the ``terms`` rows only, when
        given; built once per version and place of the weights and per ``terms`` tensor; ``None`` off the CPU, see
        ``Int8Screen.build``), else ``None``: a student in training changes its weights at every step."""
        parts = head_parts(self.mlm)
        if not (self.is_frozen and self.screen_terms) or parts is None:
            return None
        weight = parts[1].weight
        key = (weight.data_ptr(), weight._version, parts[1].bias is not None and parts[1].bias._version)
        cached = self._screens.get(id(terms))
        if cached is None or cached[0] != key or cached[1] is not terms:
            from models.screen import Int8Screen

            cached = self._screens[id(terms)] = (key, terms, Int8Screen.build(parts[1], terms))
        return cached[2]

    def train(self, mode: bool = True) -> "SpladeEncoder":
        return super().train(mode and not self.is_frozen)

    def tokenize(self, texts: Sequence[str], max_length: int, truncation_side: str = "right"
                 ) -> dict[str, torch.Tensor]:
        """Pad to the longest text; beyond ``max_length`` cut the END (``"right"``: with the paper's
        newest-first conversation format the oldest turns drop first) or the start (``"left"``)."""
        with _TOKENIZE:
            previous = self.tokenizer.truncation_side
            self.tokenizer.truncation_side = truncation_side
            try:
                return self.tokenizer(
                    list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
                )
            finally:
                self.tokenizer.truncation_side = previous

    def forward(self, texts: Sequence[str], max_length: int, truncation_side: str = "right") -> torch.Tensor:
        """Differentiable SPLADE reps, shape [B, V] (float32 unless under autocast)."""
        return self.pool(self.tokenize(texts, max_length, truncation_side))

    def pool(self, batch: dict[str, torch.Tensor], terms: torch.Tensor | None = None) -> torch.Tensor:
        """SPLADE reps [B, V] of a tokenized batch (``input_ids``, ``attention_mask``, ...), as :meth:`forward`.

        ``terms`` (sorted vocabulary ids, inference only): the terms the caller can use, e.g. those with postings
        in its index (a query term without postings changes no score); every other term comes out 0, and a frozen
        encoder's screen then covers these rows only (:mod:`models.screen`), so the projection costs less. The
        weights of ``terms`` are exactly those of ``terms=None``."""
        if terms is not None and torch.is_grad_enabled():
            raise ValueError("pool(terms=...) is for inference (under torch.inference_mode / no_grad)")
        reps = self._pool(batch, terms)
        if terms is None:
            return reps
        keep = torch.zeros(reps.shape[-1], dtype=torch.bool, device=reps.device)
        keep[terms.to(reps.device)] = True
        return reps.masked_fill_(~keep, 0.0)

    def sparse(self, batch: dict[str, torch.Tensor], terms: torch.Tensor | None = None) -> list[SparseVec]:
        """Each text's non-zero terms and weights, as :meth:`pool` (+ its non-zeros) gives them bit for bit, without
        the [B, V] matrix where a frozen encoder's screen applies (:func:`models.projection.positive_max_logits`):
        the search service's query path. Inference only."""
        if torch.is_grad_enabled():
            raise ValueError("sparse() is for inference (under torch.inference_mode / no_grad)")
        screen = self.screen(terms)
        if screen is not None and next(self.mlm.parameters()).device.type == "cpu":
            hidden = self._hidden(batch)
            if hidden is None:
                hidden = self.mlm.base_model(**batch).last_hidden_state
            rows = positive_max_logits(self.mlm, hidden, batch["attention_mask"], screen)
            if rows is not None:
                return [(ids.numpy().astype(np.int32), torch.log1p(v).numpy().astype(np.float32)) for ids, v in rows]
        out = []
        for row in self.pool(batch, terms).float().cpu():
            ids = torch.nonzero(row).squeeze(-1)
            out.append((ids.numpy().astype(np.int32), row[ids].numpy().astype(np.float32)))
        return out

    def sparse_packed(self, input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]] | None = None,
                      terms: torch.Tensor | None = None) -> list[SparseVec] | None:
        """:meth:`sparse` of unpadded token rows (a tokenizer's output without padding), all texts in one pass
        without padding (:mod:`models.packed`): each text's vector is the same bit for bit alone or beside any
        others, and close to the padded batch's (the last bits of attention differ). ``None`` where the packed
        path does not apply (not a lean BERT, a residual branch it cannot run, no screen, off the CPU): then
        pad and call :meth:`sparse`. Inference only."""
        if torch.is_grad_enabled():
            raise ValueError("sparse_packed() is for inference (under torch.inference_mode / no_grad)")
        screen, parts = self.screen(terms), head_parts(self.mlm)
        if screen is None or parts is None or next(self.mlm.parameters()).device.type != "cpu":
            return None
        p = packed.pack(input_ids, token_type_ids, self.tokenizer.pad_token_id or 0)
        hidden = packed.hidden_states(self.mlm, p)
        if hidden is not None and self.branch is not None:
            hidden = self.branch.packed(hidden, p.lengths)
        if hidden is None or hidden.dtype != torch.float32:
            return None
        transform, decoder = parts
        states = transform(hidden)[:p.tokens]
        rows = screened_maxima(decoder, states, p.lengths[:p.texts], screen)
        return [(ids.numpy().astype(np.int32), torch.log1p(v).numpy().astype(np.float32)) for ids, v in rows]

    def _pool(self, batch: dict[str, torch.Tensor], terms: torch.Tensor | None) -> torch.Tensor:
        device = next(self.mlm.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        if not torch.is_grad_enabled():
            # chunked, unpadded tokens only, the screened terms only when frozen; None: unknown head
            pooled = max_logits(self.mlm, batch, hidden=self._hidden(batch), screen=self.screen(terms))
            if pooled is not None:
                return torch.log1p(torch.relu(pooled))
        hidden = None
        if self.branch is not None:  # the encoder's states plus the branch's (models/branch.py)
            hidden = self.branch(self.mlm.base_model(**batch).last_hidden_state, batch["attention_mask"])
        if hidden is None:
            logits = self.mlm(**batch).logits  # [B, L, V]
        else:
            transform, decoder = head_parts(self.mlm)
            logits = decoder(transform(hidden))
        pad = ~batch["attention_mask"].unsqueeze(-1).bool()
        # in place when no graph is recorded: saves one [B, L, V] tensor while encoding a corpus
        fill = logits.masked_fill if torch.is_grad_enabled() else logits.masked_fill_
        masked = fill(pad, float("-inf"))
        pooled = masked.max(dim=1).values  # max first, then log1p(relu)
        return torch.log1p(torch.relu(pooled))

    def _hidden(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """At inference, the states the MLM head reads (the branch's, when there is one), through
        :mod:`models.lean_bert` where it reproduces transformers exactly; ``None``: let the head's caller run the
        base model itself."""
        base = lean_bert.hidden_states(self.mlm, batch)
        if self.branch is None:
            return base
        if base is None:
            base = self.mlm.base_model(**batch).last_hidden_state
        return self.branch(base, batch["attention_mask"])

    def encode(
        self,
        texts: Sequence[str],
        max_length: int,
        batch_size: int = 32,
        progress: Callable[[int, int], None] | None = None,
        truncation_side: str = "right",
    ) -> list[SparseVec]:
        """Sparse vectors (non-zeros only, sorted by term id), in the order of ``texts``.

        Texts are batched by length (longest first) to limit padding; batches are fixed by the input, so
        the output is deterministic. Runs in eval mode under ``torch.inference_mode``; the previous mode is
        restored afterwards.
        """
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: list[SparseVec | None] = [None] * len(texts)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), batch_size):
                    idx = order[start : start + batch_size]
                    reps = self.forward([texts[i] for i in idx], max_length, truncation_side).float().cpu()
                    for i, row in zip(idx, reps):
                        ids = torch.nonzero(row).squeeze(-1)
                        out[i] = (ids.numpy().astype(np.int32), row[ids].numpy().astype(np.float32))
                    if progress is not None:
                        progress(min(start + batch_size, len(order)), len(order))
        finally:
            self.train(was_training)
        return out  # type: ignore[return-value]

    def save(self, path: str | Path) -> Path:
        """Write safetensors + config + tokenizer (+ the residual branch, if any) atomically;
        ``SpladeEncoder(str(path))`` loads it back, and without a branch ``AutoModelForMaskedLM.from_pretrained``."""
        with atomic_path(path) as tmp:
            self.mlm.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            if self.branch is not None:
                self.branch.save(tmp)
        return Path(path)


def vocab_tokens(tokenizer) -> list[str]:
    """Token string of each id (``"##ing"``, punctuation and ``[unused0]`` kept exactly as in the vocab)."""
    vocab = tokenizer.get_vocab()
    tokens = [""] * (max(vocab.values()) + 1)
    for token, i in vocab.items():
        tokens[i] = token
    return tokens


def quantise(weights: np.ndarray, scale: int = 100) -> np.ndarray:
    """``round(w * scale)`` as int32 with the zeros dropped (numpy rounds half to even).

    The output is shorter than the input when weights round to 0: to keep term ids aligned use
    :func:`quantise_sparse`.
    """
    q = np.rint(np.asarray(weights, dtype=np.float64) * scale).astype(np.int32)
    return q[q > 0]


def quantise_sparse(term_ids: np.ndarray, weights: np.ndarray, scale: int = 100) -> SparseVec:
    """(term_ids, int32 impacts) keeping only the terms whose rounded impact is positive."""
    q = np.rint(np.asarray(weights, dtype=np.float64) * scale).astype(np.int32)
    keep = q > 0
    return np.asarray(term_ids, dtype=np.int32)[keep], q[keep]


def impact_vector(
    term_ids: np.ndarray, weights: np.ndarray, vocab_tokens: Sequence[str], scale: int = 100
) -> dict[str, int]:
    """``{token: positive int}`` for a Pyserini JsonVectorCollection line or a LuceneImpactSearcher query."""
    ids, q = quantise_sparse(term_ids, weights, scale)
    return {vocab_tokens[int(i)]: int(v) for i, v in zip(ids, q)}
