"""Prefect flows: one per stage, and ``pipeline`` chaining them. Flows hold no numerical code.

A stage flow run on its own (e.g. from its deployment) obtains its upstream manifests by running the upstream
flows, which are served from cache when nothing changed.
"""
