"""`fusionrec serve`: every endpoint, every bad request, the image folder's fence, reloads under load, SIGHUP.

One small run (the bundled quickstart data, the cheap ``bow`` encoder, 2 epochs, a FAISS Flat index and a logistic
ranker applied always) serves every test; the concurrency test runs a real uvicorn on a free loopback port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fusionrec.core.api import Pipeline, Run
from fusionrec.core.engine.rundir import RunError
from fusionrec.core.serve import BODY_MAX, HISTORY_MAX, K_MAX, ModelHolder, Served, create_app
from fusionrec.core.serve.server import install_sighup

REPO = Path(__file__).resolve().parents[1]
TOKEN = "s3cret"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "run"
    Pipeline.load(
        {
            "fusionrec": 1,
            "data": {"type": "movielens", "path": str(REPO / "examples/data/quickstart")},
            "encoders": {"text": {"type": "bow"}},
            "fuser": {"type": "mean", "dim": 32},
            "user": {"type": "mean"},
            "train": {"epochs": 2, "seed": 0},
            "retriever": {"type": "faiss", "index": "Flat"},
            "ranker": {"type": "logistic", "epochs": 5},
            "evaluate": {"metrics": ["recall@20"], "bootstrap": 0},
        }
    ).run(out)
    return out


@pytest.fixture(scope="module")
def holder(run_dir: Path) -> ModelHolder:
    return ModelHolder(Served.open(run_dir, rerank="always"), rerank="always")


@pytest.fixture(scope="module")
def client(holder: ModelHolder) -> Iterator[TestClient]:
    with TestClient(create_app(holder, admin_token=TOKEN), raise_server_exceptions=False) as c:
        yield c


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    message: str = response.json()["error"]
    return message


def test_health_ready_docs_and_page(client: TestClient, holder: ModelHolder) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["model"] == holder.current.version and "Ranker" in ready["path"]
    assert "swagger" in client.get("/docs").text.lower()
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/users/{user_id}/recommendations", "/v1/recommendations", "/v1/items/{item_id}/similar"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "fetch(" in client.get("/static/app.js").text


def test_user_recommendations_are_the_runs_path(client: TestClient, holder: ModelHolder) -> None:
    user = str(holder.current.recommender.data.user_ids[0])
    body = client.get(f"/v1/users/{user}/recommendations", params={"k": 7}).json()
    items = body["items"]
    assert len(items) == 7 and body["user_id"] == user
    expected = holder.current.run.recommend([user], 7)[0]
    assert [i["item_id"] for i in items] == [r.to_dict()["item_id"] for r in expected]
    first = items[0]
    assert {"item_id", "title", "retrieval_score", "ranker_score", "weights", "image_url"} <= set(first)
    assert first["ranker_score"] is not None and first["image_url"].startswith("/images/")
    seen = {str(r.item_id) for r in holder.current.recommender.history_of(user, last=10_000)}
    assert not seen & {str(i["item_id"]) for i in items}
    assert len(client.get(f"/v1/users/{user}/recommendations").json()["items"]) == 10  # the default k


def test_session_recommendations_follow_the_history(client: TestClient, holder: ModelHolder) -> None:
    ids = [str(i) for i in holder.current.recommender.data.item_ids]
    one = client.post("/v1/recommendations", json={"history": ids[:3], "k": 10}).json()["items"]
    other = client.post("/v1/recommendations", json={"history": ids[100:104], "k": 10}).json()["items"]
    assert [i["item_id"] for i in one] != [i["item_id"] for i in other]
    assert not {str(i["item_id"]) for i in one} & set(ids[:3])
    expected = holder.current.run.recommend_history(ids[:3], 10)
    assert [i["item_id"] for i in one] == [r.to_dict()["item_id"] for r in expected]
    banned = str(one[0]["item_id"])
    again = client.post("/v1/recommendations", json={"history": ids[:3], "k": 10, "exclude": [banned]}).json()
    assert banned not in {str(i["item_id"]) for i in again["items"]}
    numeric = client.post("/v1/recommendations", json={"history": [int(i) for i in ids[:3]], "k": 10}).json()
    assert numeric["items"] == one


def test_similar_items_and_item(client: TestClient, holder: ModelHolder) -> None:
    item = str(holder.current.recommender.data.item_ids[0])
    similar = client.get(f"/v1/items/{item}/similar", params={"k": 5}).json()["items"]
    assert len(similar) == 5 and item not in {str(i["item_id"]) for i in similar}
    meta = client.get(f"/v1/items/{item}").json()
    assert meta["item_id"] == int(item) and meta["has_image"] and meta["has_text"] and meta["title"]
    assert meta["image_url"] == f"/images/{meta['image']}"
    user = str(holder.current.recommender.data.user_ids[1])
    users = client.get("/v1/users", params={"limit": 5}).json()
    assert len(users["users"]) == 5 and users["total"] == holder.current.recommender.data.n_users
    assert user in client.get("/v1/users", params={"q": user}).json()["users"]
    history = client.get(f"/v1/users/{user}/history", params={"last": 3}).json()["items"]
    assert len(history) == 3


def test_unknown_ids_are_404_naming_them(client: TestClient) -> None:
    assert "no-such-user" in _error(client.get("/v1/users/no-such-user/recommendations"), 404)
    assert "no-such-user" in _error(client.get("/v1/users/no-such-user/history"), 404)
    assert "999999999" in _error(client.get("/v1/items/999999999"), 404)
    assert "999999999" in _error(client.get("/v1/items/999999999/similar"), 404)
    assert "999999999" in _error(client.get("/v1/items/999999999/image"), 404)


@pytest.mark.parametrize("k", ["0", "-3", "ten", "1.5", str(K_MAX + 1)])
def test_bad_k_is_422(client: TestClient, holder: ModelHolder, k: str) -> None:
    user = str(holder.current.recommender.data.user_ids[0])
    assert "k" in _error(client.get(f"/v1/users/{user}/recommendations", params={"k": k}), 422)
    _error(client.get("/v1/items/1/similar", params={"k": k}), 422)
    _error(client.post("/v1/recommendations", json={"history": ["1"], "k": k}), 422)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"history": ["1", "no-such-item"], "k": 5}, "no-such-item"),
        ({"history": ["1"], "exclude": ["nope"]}, "nope"),
        ({"history": []}, "history"),
        ({"history": ["1"] * (HISTORY_MAX + 1)}, "history"),
        ({"history": ["1"], "k": 0}, "k"),
        ({"history": ["1"], "k": True}, "k"),
        ({"history": ["1"], "extra": 1}, "extra"),
        ({"k": 5}, "history"),
    ],
)
def test_bad_session_bodies_are_422(client: TestClient, body: dict[str, Any], expected: str) -> None:
    assert expected in _error(client.post("/v1/recommendations", json=body), 422)


def test_oversized_and_malformed_bodies(client: TestClient) -> None:
    big = json.dumps({"history": ["1"] * (BODY_MAX // 4)})
    assert "limit" in _error(
        client.post("/v1/recommendations", content=big, headers={"content-type": "application/json"}), 413
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap applies as the body arrives
        yield big.encode()

    _error(client.post("/v1/recommendations", content=chunks(), headers={"content-type": "application/json"}), 413)
    _error(client.post("/v1/recommendations", content=b"{not json", headers={"content-type": "application/json"}), 422)


@pytest.mark.parametrize(
    "path",
    ["/images/..%2Fmovies.csv", "/images/%2E%2E/%2E%2E/pyproject.toml", "/images/%2Fetc%2Fpasswd", "/images/posters"],
)
def test_images_cannot_leave_their_folder(client: TestClient, path: str) -> None:
    _error(client.get(path), 404)


def test_images_are_served(client: TestClient, holder: ModelHolder) -> None:
    item = str(holder.current.recommender.data.item_ids[0])
    name = client.get(f"/v1/items/{item}").json()["image"]
    poster = client.get(f"/images/{name}")
    assert poster.status_code == 200 and poster.headers["content-type"] == "image/jpeg" and len(poster.content) > 100
    assert client.get(f"/v1/items/{item}/image").content == poster.content


def test_metrics_count_routes_statuses_latency_and_version(client: TestClient, holder: ModelHolder) -> None:
    user = str(holder.current.recommender.data.user_ids[0])
    client.get(f"/v1/users/{user}/recommendations")
    client.get("/v1/users/nobody/recommendations")
    text = client.get("/metrics").text
    route = 'route="/v1/users/{user_id}/recommendations"'
    assert f'fusionrec_http_requests_total{{{route},method="GET",status="200"}}' in text
    assert f'fusionrec_http_requests_total{{{route},method="GET",status="404"}}' in text
    assert f'fusionrec_http_errors_total{{{route},kind="client"}}' in text
    assert f'fusionrec_http_request_duration_seconds_bucket{{{route},le="+Inf"}}' in text
    assert f'fusionrec_model_info{{version="{holder.current.version}"' in text
    assert 'route="/v1/users/nobody' not in text  # labelled by template: bounded series


def tampered_copy(run_dir: Path, target: Path) -> Path:
    shutil.copytree(run_dir, target)
    manifest = json.loads((target / "manifest.json").read_text())
    assert "item_vectors.npy" in manifest["artifacts"]
    with (target / "item_vectors.npy").open("ab") as f:
        f.write(b"tampered")
    return target


def test_admin_needs_a_token_and_bad_runs_keep_the_old_one(
    holder: ModelHolder, client: TestClient, run_dir: Path, tmp_path: Path
) -> None:
    with TestClient(create_app(holder)) as off:
        _error(off.post("/admin/reload", json={}), 404)
    _error(client.post("/admin/reload", json={}), 403)
    _error(client.post("/admin/reload", json={}, headers={"Authorization": "Bearer wrong"}), 403)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = holder.current
    for bad in (tmp_path / "missing", tampered_copy(run_dir, tmp_path / "tampered")):
        message = _error(client.post("/admin/reload", json={"run": str(bad)}, headers=auth), 409)
        assert str(bad) in message and "still serving" in message
        assert holder.current is before
    ok = client.post("/admin/reload", json={"run": str(run_dir)}, headers=auth)
    assert ok.status_code == 200 and holder.current is not before
    assert 'fusionrec_model_reloads_total{result="failed"} 2' in client.get("/metrics").text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_reload_under_concurrent_requests_has_no_error(holder: ModelHolder, run_dir: Path) -> None:
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(holder, admin_token=TOKEN), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    users = [str(u) for u in holder.current.recommender.data.user_ids[:20]]
    statuses: list[int] = []
    versions: set[str] = set()

    def hammer(n: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            for i in range(n):
                r = http.get(f"/v1/users/{users[i % len(users)]}/recommendations")
                statuses.append(r.status_code)
                versions.add(r.json().get("model", ""))

    try:
        workers = [threading.Thread(target=hammer, args=(40,)) for _ in range(4)]
        for w in workers:
            w.start()
        with httpx.Client(base_url=base, timeout=60) as admin:
            reloads = [
                admin.post("/admin/reload", json={"run": str(run_dir)}, headers={"Authorization": f"Bearer {TOKEN}"})
                for _ in range(3)
            ]
        for w in workers:
            w.join()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert [r.status_code for r in reloads] == [200, 200, 200]
    assert len(statuses) == 160 and set(statuses) == {200}
    assert versions == {holder.current.version}  # one run folder: the same version string before and after


def test_sighup_reopens_the_current_run(holder: ModelHolder) -> None:
    previous = signal.getsignal(signal.SIGHUP)
    before, count = holder.current, holder.reloads["ok"]
    try:
        install_sighup(holder)
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(600):
            if holder.reloads["ok"] > count:
                break
            time.sleep(0.05)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert holder.reloads["ok"] == count + 1 and holder.current is not before


def test_serve_refuses_a_broken_run_with_one_line(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fusionrec.core.cli import main

    for bad in (tampered_copy(run_dir, tmp_path / "tampered"), tmp_path / "missing"):
        assert main(["serve", str(bad), "--port", str(_free_port())]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1].startswith("error: ") and str(bad) in lines[-1], lines
    with pytest.raises(RunError, match=r"checksum|changed|corrupt"):
        Run.open(tmp_path / "tampered")


def test_k_above_the_catalogue_is_refused(holder: ModelHolder) -> None:
    """The catalogue here (300 items) is larger than K_MAX, so the HTTP cap answers first; the check behind it."""
    from fusionrec.core.errors import FusionrecError
    from fusionrec.core.serve.app import _check_k

    n = holder.current.recommender.data.n_items
    _check_k(holder.current, n)
    with pytest.raises(FusionrecError, match=f"k={n + 1} is larger than the catalogue"):
        _check_k(holder.current, n + 1)
    with pytest.raises(FusionrecError, match="larger than the catalogue"):
        _check_k(holder.current, n, similar=True)  # an item is not similar to itself
