"""fusionrec.core: the floor plugins build on, and the floors above it.

The modules at this level are the **interface floor**: errors, params, io, the data model and the interfaces every
plugin implements (:mod:`~fusionrec.core.encoder`, :mod:`~fusionrec.core.fusion`,
:mod:`~fusionrec.core.user_tower`, :mod:`~fusionrec.core.retrieval`, :mod:`~fusionrec.core.ranking`,
:mod:`~fusionrec.core.metric`, :mod:`~fusionrec.core.model`). A plugin may import these (and
:mod:`fusionrec.registry`), nothing else in core.

Each sub-package is a floor above, and may import its own floor and those below, never above (not even inside a
function; ``tests/test_layering.py`` checks it):

- :mod:`~fusionrec.core.assembly`: YAML → validated spec → components, and loading a pipeline's data;
- :mod:`~fusionrec.core.engine`: features and their cache, the two-tower model and its training, evaluation, the
  one retrieve-then-rerank path, recommendation, run directories and the report;
- :mod:`~fusionrec.core.bench`: the benchmark code behind ``fusionrec bench``;
- :mod:`~fusionrec.core.api`: the public Python API (``Pipeline``, ``Run``);
- :mod:`~fusionrec.core.cli`: the ``fusionrec`` command line, a thin layer over the API.

This module imports nothing, so ``import fusionrec.core.errors`` stays cheap.
"""
