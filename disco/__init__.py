"""disco: DiSCo (Lupart, Aliannejadi, Kanoulas, SIGIR 2025) as a Prefect pipeline.

Packages by capability:
- ``disco``: configs and presets, table schemas, dataset readers, Lucene impact index, evaluation, CLI.
- ``models``: torch/transformers code (SPLADE encoders, losses, distillation loop, rewriter backends).
- ``tasks``: Prefect tasks wrapping the above; ``flows``: one flow per stage plus the pipeline.
"""

__version__ = "0.1.0"
