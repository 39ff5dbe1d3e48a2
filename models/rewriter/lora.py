"""LoRA adapters on the rewriting LLM: add, save, load, merge into a plain model folder.

A merged folder is an ordinary Hugging Face causal-LM folder (``config.json``, ``model.safetensors``, the
tokenizer, ``disco_rewriter.json`` describing how it was made): ``AutoModelForCausalLM.from_pretrained`` and
``vllm.LLM(model=...)`` load it as they load any model, so both rewrite backends serve the fine-tuned rewriter.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.io import atomic_path, write_json
from models.rewriter.config import CARD, RewriterConfig
from models.weights import resolve

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def load_base(name: str):
    """(model in fp32, tokenizer) of ``name`` (a short name of :mod:`models.weights`, a folder or a hub id); the
    packaged GGUF SmolLM2 comes dequantised, flagged as a plain model so that it can be saved."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = resolve(name)
    tokenizer = AutoTokenizer.from_pretrained(ref.path, **ref.kwargs)
    model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32, **ref.kwargs)
    model.hf_quantizer = None  # dequantised to fp32: transformers refuses to save a model flagged GGUF
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def lora_config(cfg: RewriterConfig, n_layers: int):
    from peft import LoraConfig

    layers = list(range(n_layers - cfg.top_layers, n_layers)) if cfg.top_layers else None
    return LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none",
                      target_modules=list(cfg.target_modules), layers_to_transform=layers, task_type="CAUSAL_LM")


def add_lora(model, cfg: RewriterConfig):
    """``model`` with fresh LoRA adapters (A random from ``cfg.seed``, B zero: the output is unchanged)."""
    from peft import get_peft_model

    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        return get_peft_model(model, lora_config(cfg, model.config.num_hidden_layers))


def adapter_state(peft_model) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(peft_model).items()}


def set_adapter_state(peft_model, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(peft_model, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"adapter state has unexpected keys: {unexpected[:3]}")


def save_adapter(peft_model, dest: Path, card: dict) -> None:
    """PEFT's adapter folder (``adapter_config.json``, ``adapter_model.safetensors``) plus the card."""
    for config in peft_model.peft_config.values():  # a short name, not this machine's path to the weights
        config.base_model_name_or_path = card.get("base", config.base_model_name_or_path)
    with atomic_path(dest) as tmp:
        peft_model.save_pretrained(tmp)
        for f in tmp.iterdir():
            f.chmod(0o644)
        write_json(tmp / CARD, card)


def load_adapter(base_model, folder: str | Path):
    """``base_model`` with the adapter of ``folder`` (a :func:`save_adapter` folder) loaded, in eval mode."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(folder), is_trainable=False).eval()


def merge(peft_model, tokenizer, dest: Path, card: dict) -> Path:
    """Fold the adapter into the weights and save a plain model folder at ``dest`` (atomically)."""
    merged = peft_model.merge_and_unload()
    merged.eval()
    with atomic_path(dest) as tmp:
        tokenizer.save_pretrained(tmp)
        merged.save_pretrained(tmp)
        for f in Path(tmp).iterdir():
            f.chmod(0o644)
        write_json(Path(tmp) / CARD, card)
    return dest

