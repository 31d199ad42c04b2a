"""The engine floor: what runs a pipeline once it is assembled.

Features and their on-disk cache, the two-tower model and its trainer, refit, evaluation, the one
retrieve-then-rerank path (:mod:`~fusionrec.core.engine.two_stage`), recommendation, run directories and the report.
May import the assembly floor, the registry and the interfaces; never the API or the CLI.
"""
