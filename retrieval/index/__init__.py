"""Lucene impact index: build (Anserini via Pyserini), search, and retrieve with a SPLADE encoder."""
