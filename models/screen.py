"""A certified int8 screen of SPLADE's vocabulary projection: the exact vectors for about half the arithmetic.

SPLADE-max keeps ``log1p(relu(max_t h_t . w_v + b_v))``: only the terms whose best logit is positive survive, a
few dozen of the 30,522 for a query of the demo student (issue 28: the projection is about 60% of a search's CPU).
The screen finds them cheaply and the exact arithmetic runs on those columns only:

1. every logit is computed in int8 (``torch.ops.quantized.linear_dynamic``: the token states quantised to 7 bits
   per block of tokens, each vocabulary row to 8 bits with its own scale, summed exactly in int32);
2. each row gets a bound on the int8 error, ``B_v = dx ||w_v||_1 + (sw_v / 2) max_t ||h^_t||_1`` (``dx`` the
   states' quantisation step, ``sw_v`` the row's, ``h^`` the quantised states): ``|h . w - h^ . w^| <=
   |h - h^| . |w| + |h^| . |w - w^|``, so ``max_t h_t . w_v <= max_t h^_t . w^_v + B_v``;
3. a term is a candidate when that upper bound (with a margin for float rounding: ``1.01 B_v + 0.01``) is above
   0; every other term's max logit is certainly not positive, so its SPLADE weight is 0;
4. :func:`models.projection.max_logits` projects the candidates exactly as before (``F.linear`` on rows of the same
   weight: the same products bit for bit, ``tests/models/test_screen.py``).

On the demo's conversations about 250 of 30,522 columns are candidates (every positive term among them), and a
query's projection takes about half the time (``benchmarks/query_path.py``). A screen may cover only some rows
(``rows``: e.g. the terms that have postings in an index, as the search service asks, :mod:`disco.serving.search`):
the other terms are then never candidates, so their weights come out 0, and the screen's arithmetic shrinks with
the rows (a third of the vocabulary on the demo's index). The screen is built only where
PyTorch has a quantised CPU engine and its own check (:meth:`Int8Screen.check`) passes; otherwise ``None`` and the
plain projection runs.
"""

from __future__ import annotations

import warnings

import torch

CHUNK = 4096  # vocabulary rows per packed int8 weight: a [tokens, 4096] float tile per call, as the float path
MARGIN, SLACK = 0.01, 1.01  # absolute and relative room for float rounding around the int8 bound
ALIGN = 64  # candidate columns are padded (with column 0) to a multiple of this: fewer distinct GEMM shapes


class Int8Screen:
    """The int8 copy of one decoder (``[V, H]`` weight and bias) and the bound of its error; see the module."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rows: torch.Tensor | None = None):
        weight = weight.detach().float().cpu()
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long).unique()  # sorted
        if self.rows is not None:  # only these vocabulary rows are screened: the others are never candidates
            weight, bias = weight[self.rows], None if bias is None else bias[self.rows]
        self.vocab, self.hidden = weight.shape
        self.scale = (weight.abs().amax(dim=1) / 127).clamp_min(1e-12)  # per row: |q| <= 127, no clipping
        self.l1 = weight.abs().sum(dim=1)
        zeros = torch.zeros(self.vocab, dtype=torch.long)
        b = None if bias is None else bias.detach().float().cpu()
        with warnings.catch_warnings():  # PyTorch 2.13 marks its quantised tensors deprecated (still there; if
            warnings.simplefilter("ignore", UserWarning)  # removed, build() returns None: the plain projection)
            q = torch.quantize_per_channel(weight, self.scale.double(), zeros, 0, torch.qint8)
            self.packed = [torch.ops.quantized.linear_prepack(q[c:c + CHUNK], None if b is None else b[c:c + CHUNK])
                           for c in range(0, self.vocab, CHUNK)]

    @classmethod
    def build(cls, decoder: torch.nn.Linear, rows: torch.Tensor | None = None) -> "Int8Screen | None":
        """The screen of ``decoder`` (of its ``rows`` only, when given), or ``None`` where it cannot be trusted
        (no quantised engine, a GPU weight, a failed self-check)."""
        if decoder.weight.device.type != "cpu" or torch.backends.quantized.engine == "none":
            return None
        try:
            screen = cls(decoder.weight, decoder.bias, rows)
            return screen if screen.check(decoder) else None
        except (RuntimeError, NotImplementedError, AttributeError):  # no dynamic int8 linear (engine, version)
            return None

    def bound(self, states: torch.Tensor) -> torch.Tensor:
        """``[V]``: how far an int8 logit of any of ``states``' rows can be from the exact one."""
        dx = float(max(states.max().item(), 0.0) - min(states.min().item(), 0.0)) / 127  # a full step: the zero
        # point is rounded, so an extreme value may be off by a whole step
        worst_row = float(states.abs().sum(dim=1).max()) + self.hidden * dx  # max_t ||h^_t||_1
        return dx * self.l1 + self.scale / 2 * worst_row

    def _tiles(self, states: torch.Tensor):
        """The int8 logits (bias included) of ``[N, H]`` float states, one ``[N, CHUNK]`` tile at a time."""
        return (torch.ops.quantized.linear_dynamic(states, p, True) for p in self.packed)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """``[N, V]`` int8 logits (bias included) of ``[N, H]`` float states."""
        return torch.cat(list(self._tiles(states)), dim=1)

    def candidate_ids(self, states: torch.Tensor) -> torch.Tensor:
        """Sorted vocabulary ids whose max logit over ``states``' rows may be positive (for a block of several
        texts, the union of each text's candidates: the max over all rows is the max of the texts' maxima)."""
        with torch.inference_mode():  # one [rows, CHUNK] tile at a time, reduced at once
            best = torch.cat([tile.amax(dim=0) for tile in self._tiles(states)])
        ids = torch.nonzero(best + SLACK * self.bound(states) + MARGIN > 0).squeeze(1)
        return self.rows[ids] if self.rows is not None else ids  # screened row -> vocabulary id (sorted)

    @staticmethod
    def pad(ids: torch.Tensor) -> torch.Tensor:
        """``ids`` padded with id 0 to a multiple of ``ALIGN`` (at least one block of it)."""
        pad = -len(ids) % ALIGN if len(ids) else ALIGN
        return torch.cat([ids, ids.new_zeros(pad)]) if pad else ids

    def check(self, decoder: torch.nn.Linear, samples: int = 64, seed: int = 0) -> bool:
        """Whether the int8 logits keep within the bound on random states of the head's scale (a guard against
        an engine that quantises differently from what the bound assumes)."""
        g = torch.Generator().manual_seed(seed)
        states = torch.randn(samples, self.hidden, generator=g) * 2
        states[0, 0] = 9.0  # an outlier sets the step, as LayerNorm's outlier dimensions do
        weight = decoder.weight.detach().float().cpu()
        bias = None if decoder.bias is None else decoder.bias.detach().float().cpu()
        if self.rows is not None:
            weight, bias = weight[self.rows], None if bias is None else bias[self.rows]
        with torch.inference_mode():
            exact = torch.nn.functional.linear(states, weight, bias)
            err = (self.logits(states) - exact).abs()
        return bool((err <= self.bound(states)).all())
