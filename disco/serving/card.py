"""The exported model card (``README.md``), written from what the run did: its typed record (core/run_record.py:
the configuration and the distill stage's summary), the student's card (``disco_student.json``) and its metrics.

Every sentence about training comes from a setting: whom the student learned from (``source_teachers``: each
teacher described by what it is), the objective (``distill.loss``: score distillation by KL, MarginMSE or
InfoNCE, or representation distillation by MSE, with the weights of the other terms), the input format in
words, the steps and the epoch kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from models.student import StudentCard

if TYPE_CHECKING:  # a type only: the serving side reads the configuration, it does not run stages
    from stages.config import PipelineConfig

OBJECTIVES = {
    "kl": "score distillation: the KL divergence between the teacher's and the student's score distributions "
          "over each training turn's passages (its positive and {n} negatives from the teacher's run; "
          "temperature {t})",
    "margin_mse": "score distillation: MarginMSE, the student's positive-minus-negative score margins regressed "
                  "on the teacher's, over each turn's positive and {n} negatives from the teacher's run",
    "info_nce": "InfoNCE over each turn's positive and {n} negatives from the teacher's run (the teacher's ranking "
                "chooses the passages; its scores are not used)",
    "rep_mse": "representation distillation: the student's vector of the conversation pulled onto the teacher "
               "rewrite's vector (MSE), as ConvDR / coSPLADE do",
}


def teacher_text(name: str, cfg: "PipelineConfig") -> str:
    """What teacher ``name`` is, in words."""
    llm = cfg.rewrite.name
    if name == "human":
        return "the dataset's human rewrites"
    if name == llm:
        return f"the rewrites of {cfg.rewrite.model}"
    if name == f"{llm}+answer":
        return f"a rewrite and a short answer by {cfg.rewrite.model}"
    if name == "answer":
        return "the question with the dataset's reference answer (privileged: the student never sees it)"
    if name == "fused":
        parts = ", ".join(teacher_text(t, cfg) for t in cfg.teacher.fuse or cfg.teacher.systems)
        return f"the fusion ({cfg.teacher.fusion}) of {parts}"
    return f"teacher {name!r}"


def objective_text(cfg: "PipelineConfig", stats: dict | None = None) -> str:
    chosen = (stats or {}).get("chosen_settings") or {}  # what distill.search chose on dev overrides the config
    d = cfg.distill.model_copy(update={k: v for k, v in chosen.items() if k in ("lambda_q", "extra_layers")})
    main = OBJECTIVES[d.loss].format(n=d.n_negatives, t=d.temperature)
    terms = [f"{main}, weight {d.main_weight:g}"]
    if d.contrastive_weight:
        terms.append(f"in-batch contrastive, weight {d.contrastive_weight:g}")
    if d.reg != "none" and d.lambda_q:
        terms.append(f"{d.reg.upper()} sparsity of the query, lambda_q {d.lambda_q:g}")
    if d.anti_zero_weight:
        terms.append(f"a penalty on empty query vectors, weight {d.anti_zero_weight:g}")
    return "; ".join(terms)


def input_text(card: StudentCard) -> str:
    """The student's input format (:class:`models.conversation.StudentInput`) in words."""
    f = card.input
    order = ("the current question first, then the earlier turns newest to oldest" if f.order == "newest_first"
             else "the turns oldest first, the current question last")
    answers = ("the agent's answers left out" if not f.answers else "the agent's answers included" +
               (f" (each cut to {f.answer_max_words} words)" if f.answer_max_words else ""))
    history = "every earlier user turn" if f.history_turns is None else f"the last {f.history_turns} user turns"
    cut = "the oldest turns" if f.truncation == "oldest" else "the newest turns"
    return (f"{order}, joined by `{f.sep}`; {answers}; {history} kept; beyond {card.max_length} tokens "
            f"{cut} are cut")


def metrics_table(metrics: dict) -> str:
    systems = metrics.get("systems", {})
    if not systems:
        return "(the run recorded no metrics)"
    measures = list(dict.fromkeys(m for s in systems.values() for m in s))[:6]
    rows = [f"| {s} | " + " | ".join(f"{v[m]:.3f}" if isinstance(v.get(m), (int, float)) else "" for m in measures)
            + " |" for s, v in systems.items()]
    return "\n".join([f"| system | {' | '.join(measures)} |", f"|---|{'---|' * len(measures)}", *rows])


def training_text(cfg: "PipelineConfig", stats: dict) -> str:
    d = cfg.distill
    kept, alpha = stats.get("best_epoch"), stats.get("interpolation_alpha")
    if kept == 0:
        chosen = "; no epoch beat the untrained encoder on the dev turns, so this is the base model's weights"
    else:
        chosen = (f"; the dev turns chose epoch {kept}" if kept is not None else "") + (
            f", mixed with the base model at alpha {alpha:g} (WiSE-FT)" if alpha not in (None, 1.0) else "")
    searched = stats.get("chosen") or {}
    if searched:  # distill.search (models/search.py)
        chosen += "; chosen on the dev turns before training: " + ", ".join(
            f"{AXES.get(k, k)} {v}" for k, v in searched.items())
    if stats.get("max_query_terms"):
        chosen += (f"; only students within {stats['max_query_terms']:.1f} dev query terms kept "
                   f"({d.max_terms_ratio:g}x the last turn's {stats.get('last_turn_dev_terms', 0):.1f})")
    if stats.get("extra_layers"):
        chosen += f"; {stats['extra_layers']} extra transformer layer(s) on a residual branch"
    return (f"{stats.get('steps', '?')} steps of AdamW (lr {d.lr:g}, {d.batch_size} turns a batch) over "
            f"{stats.get('examples', '?')} training turns{chosen}")


AXES = {"input": "input format", "extra_layers": "extra layers", "lambda_q": "FLOPS weight"}


def model_card(card: StudentCard, cfg: "PipelineConfig", stats: dict, metrics: dict, name: str) -> str:
    """README.md: what the model is, what it was trained on and how, how well it did, how to query it."""
    base = card.base_model or cfg.encoder.model
    data = [cfg.data, *cfg.extra_data]
    datasets = ", ".join(f"{d.format} ({Path(d.path).name})" for d in data)
    learned = "; ".join(dict.fromkeys(f"{Path(d.path).name}: {teacher_text(t, cfg)}" if len(data) > 1
                                      else teacher_text(t, cfg) for d, t in zip(data, cfg.source_teachers)))
    example = card.text("and how long is it?", [{"role": "user", "text": "what is the eiffel tower?"},
                                                {"role": "agent", "text": "A tower in Paris."}])
    where = f"{metrics.get('dataset', '?')} {metrics.get('split', '')}".strip()
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
- **Training data**: {datasets}; run `{cfg.name}`
- **Teacher**: {learned}
- **Objective**: {objective_text(cfg, stats)}
- **Training**: {training_text(cfg, stats)}
- **Query length**: {card.max_length} tokens
- **Index quantisation**: impacts are `round(w * {card.quant_scale})` on both sides

## Metrics of the run ({where}, {metrics.get("turns", "?")} turns)

{metrics_table(metrics)}

## Input format

The conversation is one text: {input_text(card)}. Example:

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
