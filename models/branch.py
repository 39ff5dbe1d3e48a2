"""More capacity for the student without leaving the SPLADE space: transformer layers on a residual branch.

SPLADE-tiny (2 layers of 128 units) has little room to resolve references across a conversation (issue 25). A
deeper student must still start where the frozen encoder is, so that its vectors live in the document index's
space from step 0. Stacking extra BERT layers does not do that: BERT's blocks are post-LayerNorm,
``LN(x + f(x))``, which is not the identity even when ``f`` is zero (the LayerNorm renormalises what the last
block's LayerNorm already scaled and shifted). So the extra layers sit on a branch beside the encoder's output:

    h' = h + W_o · layers(h),    W_o = 0 at the start

and the MLM head reads ``h'``. With ``W_o`` zero the student gives the base encoder's vectors exactly
(``tests/models/test_branch.py``); training moves ``W_o`` and the branch layers together. The branch layers start
as copies of the encoder's last layer (a trained layer is a better start than random weights). This is the
zero-initialised residual branch of ReZero (Bachlechner et al. 2020) and of ControlNet's zero convolutions
(Zhang et al. 2023), applied after the encoder.

Saved beside the Hugging Face weights as ``disco_branch.safetensors`` (its layer count is read from the keys), so
a student folder stays self-describing: :class:`models.splade.SpladeEncoder` loads the branch when the file is
there. A folder with a branch is not a plain ``BertForMaskedLM``: loaders that only know that architecture
(Pyserini's, sentence-transformers' SparseEncoder) cannot read it, and ``disco export`` says so.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

BRANCH_FILE = "disco_branch.safetensors"


def _encoder_layers(mlm: torch.nn.Module) -> torch.nn.ModuleList:
    layers = getattr(getattr(getattr(mlm, "base_model", None), "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
        raise ValueError(f"a residual branch needs a BERT-style encoder (base_model.encoder.layer); "
                         f"{type(mlm).__name__} has none")
    return layers


class ResidualBranch(torch.nn.Module):
    """``h + out(layers(h))`` over the encoder's last hidden states; ``out`` starts at zero (a no-op)."""

    def __init__(self, mlm: torch.nn.Module, layers: int):
        super().__init__()
        if layers < 1:
            raise ValueError(f"a residual branch has at least one layer, got {layers}")
        last = _encoder_layers(mlm)[-1]
        self.config = mlm.config
        self.layers = torch.nn.ModuleList(copy.deepcopy(last) for _ in range(layers))
        for p in self.layers.parameters():
            p.requires_grad_(True)
        hidden = mlm.config.hidden_size
        self.out = torch.nn.Linear(hidden, hidden)
        torch.nn.init.zeros_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)

    @property
    def depth(self) -> int:
        return len(self.layers)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        from models import lean_bert

        if not torch.is_grad_enabled() and lean_bert.supported_blocks(self.config, self.layers, self.training):
            return hidden + self.out(lean_bert.layers(self.layers, hidden, attention_mask))  # the same, bit for bit
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)
        x = hidden
        for layer in self.layers:
            x = layer(x, mask)
            if isinstance(x, tuple):  # older transformers return (hidden,)
                x = x[0]
        return hidden + self.out(x)

    def packed(self, hidden: torch.Tensor, lengths: list[int]) -> torch.Tensor | None:
        """:meth:`forward` at inference over packed rows [N, H] (texts of ``lengths`` tokens one after the other,
        :mod:`models.packed`), or ``None`` where :mod:`models.lean_bert` does not reproduce the layers."""
        from models import lean_bert, packed

        if torch.is_grad_enabled() or not lean_bert.supported_blocks(self.config, self.layers, self.training):
            return None
        return hidden + self.out(packed.layers(self.layers, hidden, lengths))

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / BRANCH_FILE
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(path))
        return path

    @classmethod
    def load(cls, mlm: torch.nn.Module, folder: str | Path) -> "ResidualBranch | None":
        """The branch saved in ``folder``, or ``None`` when the folder has none."""
        path = Path(folder) / BRANCH_FILE
        if not path.is_file():
            return None
        state = load_file(str(path))
        depth = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))), default=-1)
        branch = cls(mlm, depth)
        missing, unexpected = branch.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: not a residual branch of this encoder (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        return branch
