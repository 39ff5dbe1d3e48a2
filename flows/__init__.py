"""Prefect flows: ``pipeline`` (the whole run) and one flow per stage (``flows/stage_flows.py``), all derived from
the stage declarations in ``stages/``. Flows hold no numerical code.

A stage flow run on its own (e.g. from its deployment) runs the stages it needs first, served from cache when
nothing changed.
"""
