"""Export a trained student as a standard Hugging Face folder with a model card.

The folder holds ``model.safetensors``, ``config.json`` and the tokenizer (a plain ``BertForMaskedLM``: SPLADE
is max-pooled ``log(1 + relu(MLM logits))``, Formal et al., arXiv 2109.10086), the sentence-transformers
SparseEncoder files (``modules.json``: MLMTransformer + SpladePooling max/relu), the DiSCo student card
(``disco_student.json``: how the conversation is formatted, query length, quantisation) and ``README.md``.
It loads with ``AutoModelForMaskedLM.from_pretrained``, ``SparseEncoder(path)`` and Pyserini's
``LuceneImpactSearcher(index, path)`` (which picks its SPLADE encoder only when the path contains "splade").
The tokenizer is saved with the student's truncation side, so every loader cuts long conversations as in training.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from transformers import AutoModelForMaskedLM, AutoTokenizer

from core.errors import DiscoError
from core.io import atomic_path, write_json, write_text
from disco.serving.search import run_paths
from models.student import CARD, StudentCard

# sentence-transformers 6.x SparseEncoder layout (as its own ``save`` writes it): MLM logits, max-pooled relu.
ST_MODULES = [
    {"idx": 0, "name": "0", "path": "",
     "type": "sentence_transformers.sparse_encoder.modules.mlm_transformer.MLMTransformer"},
    {"idx": 1, "name": "1", "path": "1_SpladePooling",
     "type": "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling"},
]
ST_MLM = {"transformer_task": "fill-mask", "modality_config": {"text": {"method": "forward",
                                                                       "method_output_name": "logits"}},
          "module_output_name": "token_embeddings"}


def _summary(run_dir: Path) -> tuple[dict, dict]:
    """(the run's config, its metrics.json or {})."""
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    metrics = run_dir / "metrics.json"
    return record.get("config", {}), (json.loads(metrics.read_text(encoding="utf-8")) if metrics.exists() else {})


def model_card(card: StudentCard, config: dict, metrics: dict, name: str) -> str:
    """README.md: what the model is, what it was trained on and by whom, how well it did, how to query it."""
    base = card.base_model or config.get("encoder", {}).get("model", "unknown")
    data = config.get("data", {})
    tcfg, rcfg = config.get("teacher", {}), config.get("rewrite", {})
    names = [f"{t} ({rcfg.get('model', '?')})" if t == rcfg.get("teacher") else f"{t} rewrites"
             for t in tcfg.get("teachers", [])]
    teachers = card.teacher or (f"{', '.join(names)}; distilled from {tcfg.get('distill_from', '?')}"
                                if names else "see run.json")
    systems = metrics.get("systems", {})
    measures = sorted({m for s in systems.values() for m in s})[:6]
    rows = "\n".join(f"| {s} | " + " | ".join(f"{v[m]:.3f}" if isinstance(v.get(m), (int, float)) else ""
                                              for m in measures) + " |" for s, v in systems.items())
    table = (f"| system | {' | '.join(measures)} |\n|---|{'---|' * len(measures)}\n{rows}" if systems
             else "(the run recorded no metrics)")
    example = card.text("and how long is it?", [{"role": "user", "text": "what is the eiffel tower?"},
                                                {"role": "agent", "text": "A tower in Paris."}])
    return f"""---
license: apache-2.0
library_name: sentence-transformers
pipeline_tag: feature-extraction
base_model: {base}
tags: [splade, sparse-encoder, conversational-search, disco, learned-sparse-retrieval]
---

# {name}: a DiSCo conversational SPLADE student

A SPLADE query encoder that reads a whole conversation and searches a sparse (impact) index directly, with no
LLM rewrite at query time: DiSCo, "LLM knowledge distillation for efficient sparse retrieval in conversational
search" (Lupart et al., SIGIR 2025, arXiv 2410.14609).

- **Base model**: {base}
- **Training data**: {data.get("format", "?")} ({Path(str(data.get("path", "?"))).name}), run `{config.get("name", "?")}`
- **Teacher(s)**: {teachers} (the student's query vectors are distilled from the teacher rewrites' vectors)
- **Query length**: {card.max_length} tokens, truncation side `{card.input.truncation_side()}`
- **Index quantisation**: impacts are `round(w * {card.quant_scale})` on both sides

## Metrics of the run ({metrics.get("dataset", "?")} {metrics.get("split", "")}, {metrics.get("turns", "?")} turns)

{table}

## Input format

The conversation is one text: {card.input.model_dump()}. Example:

    {example}

## How to query it

```python
from transformers import AutoModelForMaskedLM, AutoTokenizer   # plain SPLADE-max
import torch
tok, mlm = AutoTokenizer.from_pretrained(PATH), AutoModelForMaskedLM.from_pretrained(PATH)
batch = tok([TEXT], truncation=True, max_length={card.max_length}, return_tensors="pt")
rep = torch.log1p(torch.relu(mlm(**batch).logits)).amax(dim=1)   # [1, vocab]

from sentence_transformers import SparseEncoder                  # sentence-transformers
rep = SparseEncoder(PATH).encode_query([TEXT])

from pyserini.search.lucene import LuceneImpactSearcher          # Pyserini (PATH must contain "splade")
hits = LuceneImpactSearcher(INDEX, PATH).search(TEXT, k=10)

from disco.serving.search import Searcher                        # disco: formats the conversation for you
Searcher(PATH, INDEX).search([{{"speaker": "user", "text": "..."}}], k=10)
```
"""


def export(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the run's student to ``out_dir`` (atomically) and return it."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    student = run_paths(run_dir)["student"]
    card = StudentCard.load(student)
    config, metrics = _summary(run_dir)
    try:
        mlm = AutoModelForMaskedLM.from_pretrained(str(student))
        tokenizer = AutoTokenizer.from_pretrained(str(student))
    except (OSError, ValueError) as e:
        raise DiscoError(f"{student}: cannot load the student ({e})") from None
    tokenizer.truncation_side = card.input.truncation_side()
    tokenizer.model_max_length = card.max_length
    with atomic_path(out_dir) as tmp:
        mlm.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if (student / CARD).exists():
            shutil.copy2(student / CARD, tmp / CARD)
        else:
            card.save(tmp)
        write_json(tmp / "modules.json", ST_MODULES)
        write_json(tmp / "sentence_bert_config.json", {**ST_MLM, "max_seq_length": card.max_length})
        write_json(tmp / "1_SpladePooling" / "config.json", {
            "pooling_strategy": "max", "activation_function": "relu", "embedding_dimension": None})
        write_json(tmp / "config_sentence_transformers.json", {
            "model_type": "SparseEncoder", "similarity_fn_name": "dot", "prompts": {"query": "", "document": ""},
            "default_prompt_name": None})
        write_text(tmp / "README.md", model_card(card, config, metrics, out_dir.name))
    return out_dir
