"""Query-time DiSCo: the search API (:mod:`.search`), the HTTP service (:mod:`.app`) and the model export
(:mod:`.export`). Nothing here imports Prefect, ``flows/`` or ``tasks/``."""
