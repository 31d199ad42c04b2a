"""The FastAPI app: recommendations, session recommendations, similar items, items, the page, health, metrics.

Every answer comes from the served run's :class:`~fusionrec.core.engine.recommend.Recommender`, that is from the
run's one :class:`~fusionrec.core.engine.two_stage.TwoStage` path (the one evaluation measured): this module
only validates requests and shapes answers. The recommendation endpoints are plain ``def`` functions, so FastAPI
runs them in its thread pool: torch and FAISS release the GIL while they compute, so concurrent requests overlap.
"""

from __future__ import annotations

import hmac
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from fusionrec.core.engine.recommend import Recommendation, UnknownIdError
from fusionrec.core.errors import FusionrecError
from fusionrec.core.serve.metrics import Metrics
from fusionrec.core.serve.middleware import BodyLimit, Timing
from fusionrec.core.serve.state import ModelHolder, ReloadError, Served

K_MAX = 100
"""The most recommendations one request may ask for (``k``); more is a 422."""
HISTORY_MAX = 200
"""The longest session history ``POST /v1/recommendations`` takes (the user towers read at most their
``max_history`` newest items anyway); longer is a 422."""
EXCLUDE_MAX = 1000
"""The most item ids ``exclude`` may hold."""
BODY_MAX = 64 * 1024
"""The largest request body, in bytes; larger is a 413."""

ItemId = str | int
K = Annotated[int, Query(ge=1, le=K_MAX, description=f"how many items (1 to {K_MAX}, at most the catalogue)")]


class SessionRequest(BaseModel):
    """``POST /v1/recommendations``: a session's history, for an anonymous or brand-new user."""

    model_config = ConfigDict(extra="forbid")

    history: list[ItemId] = Field(min_length=1, max_length=HISTORY_MAX, description="item ids, newest last")
    k: int = Field(10, ge=1, le=K_MAX, strict=True)
    exclude: list[ItemId] = Field(default_factory=list, max_length=EXCLUDE_MAX)


class ReloadRequest(BaseModel):
    """``POST /admin/reload``: the run directory to serve next (default: the current one, re-opened)."""

    model_config = ConfigDict(extra="forbid")

    run: str | None = None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _rows(rows: list[Recommendation]) -> list[dict[str, Any]]:
    return [_with_url(row.to_dict()) for row in rows]


def _with_url(row: dict[str, Any]) -> dict[str, Any]:
    image = row.get("image")
    row["image_url"] = f"/images/{quote(image)}" if image else None
    return row


def _check_k(served: Served, k: int, *, similar: bool = False) -> None:
    n = served.recommender.data.n_items - (1 if similar else 0)
    if k > n:
        raise FusionrecError(f"k={k} is larger than the catalogue ({n:,} items to choose from); ask for at most {n:,}")


def create_app(holder: ModelHolder, *, admin_token: str | None = None) -> FastAPI:
    """The app serving ``holder``'s run; ``/admin/*`` answers only with ``admin_token`` (404 without one)."""
    app = FastAPI(
        title="fusionrec",
        summary="Recommendations from a fusionrec run, through the run's retrieve-then-rerank path.",
        version="1",
    )
    metrics = Metrics()
    app.state.holder = holder
    app.state.metrics = metrics
    _add_error_handlers(app)
    _add_recommendation_routes(app, holder)
    _add_item_routes(app, holder)
    _add_service_routes(app, holder, metrics, admin_token)
    # follow_symlink: a strict editable install links each file of the folder to the source tree
    static = StaticFiles(directory=str(files("fusionrec.core.serve") / "static"), follow_symlink=True)
    app.mount("/static", static, name="static")
    app.add_middleware(BodyLimit, limit=BODY_MAX)
    app.add_middleware(Timing, metrics=metrics)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UnknownIdError)
    async def unknown(request: Request, exc: UnknownIdError) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(FusionrecError)
    async def invalid(request: Request, exc: FusionrecError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems), "detail": exc.errors()}, status_code=422)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        # a bug, not a client's mistake: logged with its traceback by uvicorn, never sent to the client
        return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")


def _add_recommendation_routes(app: FastAPI, holder: ModelHolder) -> None:
    @app.get("/v1/users/{user_id}/recommendations", tags=["recommend"])
    def user_recommendations(user_id: str, k: K = 10) -> dict[str, Any]:
        """Top-k unseen items for a known user: retrieval, then the ranker when the run applies it."""
        served = holder.current
        _check_k(served, k)
        [rows] = served.run.recommend([user_id], k)
        return {"user_id": user_id, "model": served.version, "items": _rows(rows)}

    @app.post("/v1/recommendations", tags=["recommend"])
    def session_recommendations(body: SessionRequest) -> dict[str, Any]:
        """Top-k items for a history sent now (newest last): the user tower reads it at request time."""
        served = holder.current
        _check_k(served, body.k)
        try:
            rows = served.run.recommend_history([str(i) for i in body.history], body.k, [str(i) for i in body.exclude])
        except UnknownIdError as exc:  # ids in the body are the client's data: a 422, not a missing resource
            raise FusionrecError(f"history/exclude: {exc}") from exc
        return {"model": served.version, "items": _rows(rows)}

    @app.get("/v1/items/{item_id}/similar", tags=["recommend"])
    def similar_items(item_id: str, k: K = 10) -> dict[str, Any]:
        """The k items closest to this one in the run's index (itself excluded)."""
        served = holder.current
        _check_k(served, k, similar=True)
        return {"item_id": item_id, "model": served.version, "items": _rows(served.run.similar(item_id, k))}


def _add_item_routes(app: FastAPI, holder: ModelHolder) -> None:
    @app.get("/v1/items/{item_id}", tags=["catalogue"])
    def item(item_id: str) -> dict[str, Any]:
        """An item's metadata: title, text, image, per-modality weights."""
        return _with_url(holder.current.run.item(item_id))

    @app.get("/v1/users", tags=["catalogue"])
    def users(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100, q: Annotated[str, Query(max_length=100)] = ""
    ) -> dict[str, Any]:
        """User ids (those starting with ``q``), for the page's picker."""
        ids = [str(u) for u in holder.current.recommender.data.user_ids]
        matching = [u for u in ids if u.startswith(q)] if q else ids
        return {"total": len(matching), "users": matching[:limit]}

    @app.get("/v1/users/{user_id}/history", tags=["catalogue"])
    def history(user_id: str, last: Annotated[int, Query(ge=1, le=K_MAX)] = 20) -> dict[str, Any]:
        """A known user's most recent items, newest first."""
        rows = holder.current.recommender.history_of(user_id, last)
        return {"user_id": user_id, "items": _rows(rows)}

    @app.get("/v1/items/{item_id}/image", tags=["catalogue"])
    def item_image(item_id: str) -> Response:
        """The item's image (from the dataset's image folder)."""
        served = holder.current
        name = served.run.item(item_id)["image"]
        if not name:
            return _error(404, f"item {item_id!r} has no image")
        return _image(served, name)

    @app.get("/images/{name:path}", tags=["catalogue"])
    def image(name: Annotated[str, PathParam(max_length=255)]) -> Response:
        """A file of the dataset's image folder, by name; nothing outside that folder."""
        return _image(holder.current, name)


def _image(served: Served, name: str) -> Response:
    folder = served.image_dir
    if folder is None:
        return _error(404, "the run's data has no images")
    target = (folder / name).resolve()
    if not target.is_relative_to(folder) or not target.is_file():
        return _error(404, f"no image {name!r} in the dataset's image folder")
    return FileResponse(target, headers={"Cache-Control": "public, max-age=3600"})


def _add_service_routes(app: FastAPI, holder: ModelHolder, metrics: Metrics, token: str | None) -> None:
    page = files("fusionrec.core.serve") / "static" / "index.html"

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return FileResponse(Path(str(page)), media_type="text/html")

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"])
    async def readyz() -> JSONResponse:
        """Readiness: a run is loaded (and which)."""
        served = holder.current
        if served is None:
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse({"ready": True, "model": served.version, "path": served.run.path_description})

    @app.get("/metrics", tags=["service"])
    async def prometheus() -> PlainTextResponse:
        """Requests, latency, errors and the model version, in the Prometheus text format."""
        served = holder.current
        text = metrics.render(served.version, served.created, dict(holder.reloads))
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.post("/admin/reload", tags=["admin"])
    def reload(body: ReloadRequest, authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
        """Open a run beside the current one and swap (``Authorization: Bearer TOKEN``); a run that fails to open
        leaves the current one serving and answers 409 with the reason."""
        if token is None:
            return _error(404, "admin endpoints are off: start the server with --admin-token or FUSIONREC_ADMIN_TOKEN")
        if not hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode()):
            return _error(403, "admin endpoints need the header 'Authorization: Bearer <the server's admin token>'")
        try:
            fresh = holder.reload(body.run)
        except ReloadError as exc:
            return _error(409, str(exc))
        return JSONResponse({"reloaded": True, "model": fresh.version})
