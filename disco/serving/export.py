"""Export a trained student as a standard Hugging Face folder with a model card.

The folder holds ``model.safetensors``, ``config.json`` and the tokenizer (a plain ``BertForMaskedLM``: SPLADE
is max-pooled ``log(1 + relu(MLM logits))``, Formal et al., arXiv 2109.10086), the sentence-transformers
SparseEncoder files (``modules.json``: MLMTransformer + SpladePooling max/relu), the DiSCo student card
(``disco_student.json``: how the conversation is formatted, query length, quantisation) and ``README.md`` (the
model card, written from the run's record: disco/serving/card.py).
It loads with ``AutoModelForMaskedLM.from_pretrained``, ``SparseEncoder(path)`` and Pyserini's
``LuceneImpactSearcher(index, path)`` (which picks its SPLADE encoder only when the path contains "splade").
The tokenizer is saved with the student's truncation side, so every loader cuts long conversations as in training.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from transformers import AutoModelForMaskedLM, AutoTokenizer

from core.errors import DiscoError
from core.io import atomic_path, write_json, write_text
from core.run_record import RunRecord
from disco.serving.card import model_card
from models.branch import BRANCH_FILE
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


def export(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the run's student to ``out_dir`` (atomically) and return it."""
    from stages.config import PipelineConfig  # the run's configuration, typed (no stage runs here)

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    record = RunRecord[PipelineConfig].read(run_dir, need=("ingest", "index", "distill"))
    student = record.output("distill", "student")
    if (student / BRANCH_FILE).exists():  # a deepened student (distill.extra_layers, models/branch.py)
        raise DiscoError(f"{student}: this student has a residual branch of extra layers (distill.extra_layers > 0); "
                         f"Pyserini and sentence-transformers load plain BertForMaskedLM folders only, so it cannot "
                         f"be exported in their format. Query it with `disco search` / `disco serve`, or train with "
                         f"--set distill.extra_layers=0 --set distill.search.extra_layers=[] to export")
    card = StudentCard.load(student)
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.exists() else {}
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
        write_text(tmp / "README.md", model_card(card, record.config, record.manifest("distill").stats, metrics,
                                                 out_dir.name))
        readable(tmp)
    return out_dir


def readable(folder: Path) -> None:
    """Files 0644 and folders 0755, less the umask: a model folder is for others to read (transformers writes
    ``model.safetensors`` 0600, through a temporary file)."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            p.chmod((0o755 if p.is_dir() else 0o644) & ~umask)
