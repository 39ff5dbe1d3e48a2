"""The core every other package builds on: errors, atomic IO and manifests, table schemas, repository paths.

It imports nothing else of the project (see tests/test_architecture.py for the package order).
"""
