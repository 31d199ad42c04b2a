"""``fusionrec serve``: a finished run behind an HTTP API and a page, reloadable without downtime.

.. code-block:: python

    from fusionrec.core.serve import ModelHolder, Served, create_app

    app = create_app(ModelHolder(Served.open("runs/quickstart")), admin_token="secret")

:func:`run_server` is what the command line calls (uvicorn, SIGHUP reloads). See docs/serving.md.
"""

from __future__ import annotations

from fusionrec.core.serve.app import BODY_MAX, EXCLUDE_MAX, HISTORY_MAX, K_MAX, create_app
from fusionrec.core.serve.server import run_server
from fusionrec.core.serve.state import ModelHolder, ReloadError, Served

__all__ = [
    "BODY_MAX",
    "EXCLUDE_MAX",
    "HISTORY_MAX",
    "K_MAX",
    "ModelHolder",
    "ReloadError",
    "Served",
    "create_app",
    "run_server",
]
