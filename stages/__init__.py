"""The pipeline's stages, each declared once (one module per stage), and the pipeline's configuration.

Prefect-free: :mod:`stages.graph` lists the declarations in order, :mod:`stages.base` derives each stage's key,
output folder and code version and runs a stage as a plain function (:func:`stages.base.run_stage`).
This ``__init__`` stays empty so that importing one stage does not import the others.
"""
