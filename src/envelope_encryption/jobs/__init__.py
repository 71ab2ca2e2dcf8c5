"""Layer 5: the bundle's jobs as entry points, the CLI, and the local runner.

Each job module has ``build_parser()``, ``run(settings, spark, ...)`` and ``main(argv)``, a
docstring whose first sentence is its summary, and one line in :data:`.registry.JOBS`.
"""
