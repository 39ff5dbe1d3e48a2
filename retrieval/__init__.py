"""Retrieval: dataset readers and ingest, the Lucene impact index, runs, teacher runs, evaluation and reports.

Prefect-free library code on files and configs; it builds on ``core`` and ``models``.
"""
