"""fusionrec.core: interfaces, errors, configuration, pipeline assembly and the CLI.

The interfaces (:mod:`~fusionrec.core.encoder`, :mod:`~fusionrec.core.fusion`, …) and :mod:`~fusionrec.core.errors`
are the bottom layer; :mod:`~fusionrec.core.config`, :mod:`~fusionrec.core.pipeline` and :mod:`~fusionrec.core.cli`
sit on top of the registry. This module imports nothing heavy so that ``import fusionrec.core.errors`` stays cheap.
"""
