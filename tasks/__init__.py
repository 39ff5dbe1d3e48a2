"""Prefect on top of the Prefect-free stages: one generic wrapper turns a stage declaration into a cached task."""
