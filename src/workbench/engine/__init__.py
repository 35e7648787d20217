"""The engine: the process that owns the model (load, preview, train, generate, save).

Importing this package is cheap; the ML stack is imported by `workbench.engine.boot.boot()`.
"""
