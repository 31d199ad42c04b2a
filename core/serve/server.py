"""Running the app: uvicorn on one process, torch's threads sized for concurrent requests, SIGHUP reloads."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from fusionrec.core.serve.app import create_app
from fusionrec.core.serve.state import ModelHolder, ReloadError, Served
from fusionrec.registry import Registry

_log = logging.getLogger(__name__)


def set_threads(threads: int) -> None:
    """Intra-op threads of torch and FAISS per request: concurrent requests already run in parallel in the
    thread pool, and each one's small matrix products gain little from more threads (docs/serving.md)."""
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:  # a run without a FAISS retriever
        pass


def install_sighup(holder: ModelHolder) -> None:
    """On SIGHUP, re-open the current run directory in a background thread and swap it in when it opens."""

    def reload_in_background() -> None:
        try:
            holder.reload()
        except ReloadError as exc:
            _log.error("%s", exc)

    def on_hup(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=reload_in_background, name="fusionrec-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, on_hup)


def run_server(
    run_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    admin_token: str | None = None,
    rerank: str = "auto",
    threads: int = 1,
    registry: Registry | None = None,
    log_level: str = "info",
) -> None:
    """Open ``run_dir`` (every artifact checked) and serve it until interrupted.

    Raises:
        FusionrecError: the run does not open (incomplete, tampered, another format): nothing is served.
    """
    import uvicorn

    set_threads(threads)
    holder = ModelHolder(Served.open(run_dir, registry, rerank=rerank), registry, rerank=rerank)
    app = create_app(holder, admin_token=admin_token)
    install_sighup(holder)
    _log.info("serving %s on http://%s:%d", holder.current.version, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
