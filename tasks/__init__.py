"""Prefect tasks: each wraps one stage's work (in ``disco`` / ``models``) with caching and artifacts."""
