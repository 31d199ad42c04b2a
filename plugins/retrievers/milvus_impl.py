"""A retriever over a Milvus collection: Milvus Lite embedded in the process, or a Milvus server or cluster.

- **Where the data lives.** ``uri: null`` (the default) keeps a Milvus Lite database in a private temporary folder;
  ``uri: some/path.db`` keeps it there; ``uri: http://host:19530`` uses a server, which keeps the collection.
  Milvus Lite (pure Python since milvus-lite 3) serves each database folder from gRPC threads inside this
  process and holds an exclusive lock on it, so one folder serves one process.
- **Saving.** A Milvus Lite database is flushed, its server stopped (so the files are complete) and the folder
  copied as ``items.db`` into the save folder beside ``ids.npy`` and the manifest ``retriever.json`` (parameters,
  dimension, count; never the token). Loading copies ``items.db`` to a private working folder and opens that, so
  the saved folder is never locked or changed: two processes (or two retrievers in one) can load it at once. A
  saved server retriever records the uri and collection; loading reconnects and checks the row count.
- **Exclusion.** Rows without excluded ids go to Milvus in batches; each row with some is one search with the
  filter expression ``id not in [...]`` (a filter applies to a whole call), listing only ids in the index.
- **Ids.** The int64 primary key is the external id. Milvus does not refuse a repeated primary key, so the
  retriever keeps the id list itself (add() refuses an id already present; remove() counts what was present).
- **Closing.** :meth:`MilvusRetriever.close` (also called when the retriever is garbage-collected or the process
  exits) closes the client, stops the Lite server of its folder and deletes a private folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fusionrec.core.errors import ConfigError, DataError, FusionrecError
from fusionrec.core.io import atomic_write
from fusionrec.core.retrieval import Retriever, SearchResult
from fusionrec.plugins.retrievers.common import (
    as_ids,
    as_matrix,
    check_exclude,
    check_k,
    check_new_ids,
    empty_result,
    read_manifest,
    write_manifest,
)
from fusionrec.plugins.retrievers.milvus import INDEX_KEYS, SEARCH_KEYS, SERVER_SCHEMES, check_index_keys

# gRPC (under pymilvus) installs fork handlers that can crash a process which forks later (a DataLoader worker, a
# subprocess); fusionrec never carries a gRPC channel across a fork, so they are off unless the user set otherwise
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

KIND = "milvus"
IDS_FILE = "ids.npy"
LITE_DIR = "items.db"
METRICS = {"ip": "IP", "l2": "L2", "cosine": "COSINE"}
INSERT_BYTES = 16 << 20
"""Vectors sent per insert call (bytes): well under gRPC's default 64 MiB message limit."""
SEARCH_BATCH = 1024
"""Query rows sent per search call (Milvus servers take at most 16,384)."""
LOG = logging.getLogger(__name__)


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as exc:
        raise ConfigError.at(
            ("type",),
            f"the milvus retriever needs pymilvus and milvus-lite ({exc}); install them with "
            "pip install 'fusionrec[milvus]'",
        ) from exc
    return pymilvus


def _message(exc: BaseException) -> str:
    return str(getattr(exc, "message", "") or exc)


def _copy_database(source: Path, target: Path) -> None:
    """Copy a Milvus Lite folder (not its lock file) to ``target``, replacing it only once the copy is complete."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        shutil.copytree(source, staging / "db", ignore=shutil.ignore_patterns("LOCK"))
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(staging / "db", target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _Session:
    """What a retriever holds open: its client, the Lite server of its folder, and a private folder to delete.

    Kept apart from the retriever so that ``weakref.finalize`` can release it without holding the retriever alive.
    """

    def __init__(self, lite: Path | None, private: Path | None) -> None:
        self.lite, self.private = lite, private
        self.client: Any = None

    def disconnect(self) -> None:
        """Close the client and stop the Lite server of this folder (its files are then complete on disk)."""
        client, self.client = self.client, None
        if client is not None:
            client.close()
        if self.lite is not None:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(str(self.lite))

    def close(self) -> None:
        self.disconnect()
        if self.private is not None:
            shutil.rmtree(self.private, ignore_errors=True)
            self.private = None


class MilvusRetriever(Retriever):
    """Nearest-neighbour search in a Milvus collection (Milvus Lite or a server); see the module docstring."""

    def __init__(
        self,
        uri: str | None = None,
        collection: str = "fusionrec_items",
        index: str = "FLAT",
        index_params: dict[str, int] | None = None,
        search_params: dict[str, int] | None = None,
        metric: str = "ip",
        timeout: float = 10.0,
        token_env: str | None = None,
        *,
        working_copy: Path | None = None,
    ) -> None:
        """Connect (starting Milvus Lite when the uri is not a server); ``working_copy`` is for :meth:`load`."""
        if metric not in METRICS:
            raise ConfigError.at(("metric",), f"must be 'ip', 'l2' or 'cosine', got {metric!r}")
        if index not in INDEX_KEYS:
            raise ConfigError.at(("index",), f"must be one of {', '.join(INDEX_KEYS)}, got {index!r}")
        checks = (("index_params", index_params, INDEX_KEYS), ("search_params", search_params, SEARCH_KEYS))
        for key, given, allowed in checks:
            try:
                check_index_keys(dict(given or {}), index, allowed)
            except ValueError as exc:
                raise ConfigError.at((key,), str(exc)) from exc
        self.params: dict[str, Any] = {
            "uri": uri,
            "collection": collection,
            "index": index,
            "index_params": dict(index_params or {}),
            "search_params": dict(search_params or {}),
            "metric": metric,
            "timeout": float(timeout),
            "token_env": token_env,
        }
        private: Path | None = None
        lite: Path | None = None
        if working_copy is not None:
            lite, private = Path(working_copy).resolve(), Path(working_copy).resolve().parent
        elif uri is None:
            private = Path(tempfile.mkdtemp(prefix="fusionrec-milvus-"))
            lite = private / LITE_DIR
        elif not uri.startswith(SERVER_SCHEMES):
            lite = Path(uri).resolve()
            lite.parent.mkdir(parents=True, exist_ok=True)
        self._session = _Session(lite, private)
        self._finalizer = weakref.finalize(self, self._session.close)
        self._dim: int | None = None
        self._ids = np.zeros(0, dtype=np.int64)
        self._sorted = self._ids
        try:
            self._client()
        except BaseException:
            self.close()
            raise

    # -- connection ---------------------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """The server uri, or the Milvus Lite folder this retriever works in."""
        lite = self._session.lite
        return f"Milvus Lite {lite}" if lite is not None else f"the Milvus server at {self.params['uri']}"

    def _token(self) -> str:
        name = self.params["token_env"]
        if not name:
            return ""
        value = os.environ.get(name)
        if value is None:
            raise ConfigError.at(("token_env",), f"the environment variable {name} is not set; export the token there")
        return value

    def _client(self) -> Any:
        if self._session.client is not None:
            return self._session.client
        pymilvus = _pymilvus()
        lite = self._session.lite
        target = str(lite) if lite is not None else str(self.params["uri"])
        # pymilvus pings every 10 s; Milvus Lite's gRPC server allows one ping per 5 min and answers more with a
        # GOAWAY (too_many_pings) that gRPC logs to stderr. A loopback channel needs no keepalive: none for Lite.
        quiet = {"grpc_options": {"grpc.keepalive_time_ms": 2**31 - 1, "grpc.keepalive_permit_without_calls": 0}}
        try:
            client = pymilvus.MilvusClient(
                uri=target, token=self._token(), timeout=self.params["timeout"], **(quiet if lite else {})
            )
        except pymilvus.MilvusException as exc:
            if lite is not None:
                raise DataError(
                    f"cannot open the Milvus Lite database: {_message(exc)} (another process may hold it open)",
                    file=lite,
                ) from exc
            raise ConfigError.at(
                ("uri",),
                f"cannot reach the Milvus server at {target} (waited up to {self.params['timeout']:g} s): "
                f"{_message(exc)}. Start the server or correct uri; leave uri out to use the embedded Milvus Lite",
            ) from exc
        self._session.client = client
        if self._dim is not None:  # reconnecting after save(): a restarted Lite server has released the collection
            self._call("loading the collection", "load_collection", self.params["collection"])
        return client

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``client.method(*args, **kwargs)``, a Milvus failure becoming one FusionrecError naming the uri."""
        pymilvus = _pymilvus()
        client = self._client()
        call: Callable[..., Any] = getattr(client, method)
        try:
            return call(*args, **kwargs)
        except pymilvus.MilvusException as exc:
            raise FusionrecError(f"{self.where}: {what} failed: {_message(exc)}") from exc

    def close(self) -> None:
        """Close the client, stop the Lite server of this retriever's folder and delete a private folder."""
        self._finalizer()

    def __enter__(self) -> MilvusRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the index ----------------------------------------------------------------------------------------------

    @property
    def dim(self) -> int | None:
        return self._dim

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def metric(self) -> str:
        return str(self.params["metric"])

    def _set_ids(self, ids: npt.NDArray[np.int64]) -> None:
        self._ids = ids
        self._sorted = np.sort(ids)

    def _create_collection(self, dim: int) -> None:
        pymilvus = _pymilvus()
        name = self.params["collection"]
        if self._call("checking the collection", "has_collection", name):
            self._call(f"dropping the collection {name!r}", "drop_collection", name)
        schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
        schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=dim)
        build = dict(self.params["index_params"])
        index = self._client().prepare_index_params()
        # pymilvus 3 sends each build parameter as its own key; Milvus Lite 3 reads only a JSON "params" key, which
        # Milvus servers also accept (and merge): sending both reaches either
        index.add_index(
            "vector",
            index_type=self.params["index"],
            metric_type=METRICS[self.metric],
            params={**build, "params": build} if build else {},
        )
        self._call(
            f"creating the collection {name!r}",
            "create_collection",
            name,
            schema=schema,
            index_params=index,
            consistency_level="Strong",  # a search sees every insert and delete before it
        )

    def _insert(self, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        step = max(1, INSERT_BYTES // max(1, 4 * vectors.shape[1]))
        for start in range(0, len(ids), step):
            rows = [
                {"id": int(i), "vector": v}
                for i, v in zip(ids[start : start + step].tolist(), vectors[start : start + step], strict=True)
            ]
            self._call("inserting vectors", "insert", self.params["collection"], rows)
        self._call("flushing", "flush", self.params["collection"])
        self._settle()

    def _settle(self) -> None:
        """Milvus Lite: wait for the compaction and index build a flush starts in the background.

        Until that build ends, Lite searches the new rows by brute force, so an approximate index would answer
        differently from one search to the next (and before and after save → load). Lite has no call that waits
        for it; this reaches its engine in this process (private API: skipped if it changes).
        """
        lite = self._session.lite
        if lite is None:
            return
        from milvus_lite.server_manager import server_manager_instance

        entry = getattr(server_manager_instance, "_servers", {}).get(str(lite))
        try:
            collection = entry[1].get_collection(self.params["collection"])
            wait = collection._wait_for_bg
        except (AttributeError, IndexError, KeyError, TypeError):
            LOG.debug("cannot wait for Milvus Lite's background index build (its internals changed)")
            return
        wait(timeout=None)

    def build(self, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        array = as_matrix(vectors, None, "item vectors")
        new_ids = as_ids(ids, len(array))
        self._create_collection(array.shape[1])
        self._dim = array.shape[1]
        self._set_ids(np.zeros(0, dtype=np.int64))
        self._insert(array, new_ids)
        self._set_ids(new_ids.copy())

    def add(self, vectors: npt.NDArray[np.float32], ids: npt.NDArray[np.int64]) -> None:
        if self._dim is None:
            self.build(vectors, ids)
            return
        array = as_matrix(vectors, self._dim, "item vectors")
        new_ids = as_ids(ids, len(array))
        check_new_ids(new_ids, self._ids)
        self._insert(array, new_ids)
        self._set_ids(np.concatenate([self._ids, new_ids]))

    def _present(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The unique ids of ``ids`` that are in the index."""
        ids = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        if not len(self._sorted) or not len(ids):
            return ids[:0]
        at = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        return ids[self._sorted[at] == ids]

    def remove(self, ids: npt.NDArray[np.int64]) -> int:
        present = self._present(ids)
        if len(present):
            self._call("deleting vectors", "delete", self.params["collection"], ids=present.tolist())
            self._set_ids(self._ids[~np.isin(self._ids, present)])
        return len(present)

    # -- search -------------------------------------------------------------------------------------------------

    def _search(self, queries: npt.NDArray[np.float32], limit: int, where: str = "") -> list[Any]:
        hits: list[Any] = self._call(
            "searching",
            "search",
            self.params["collection"],
            data=list(queries),
            limit=limit,
            filter=where,
            output_fields=["id"],
            search_params={"metric_type": METRICS[self.metric], "params": dict(self.params["search_params"])},
        )
        return hits

    def _fill(self, ids: npt.NDArray[np.int64], scores: npt.NDArray[np.float32], row: int, hits: Any) -> None:
        found = [int(hit["id"]) for hit in hits]
        distances = np.asarray([float(hit["distance"]) for hit in hits], dtype=np.float32)
        ids[row, : len(found)] = found
        scores[row, : len(found)] = -distances if self.metric == "l2" else distances

    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        exclude: Sequence[npt.NDArray[np.int64]] | None = None,
    ) -> SearchResult:
        k = check_k(k)
        if self._dim is None:
            raise DataError("the index is empty: call build() before search()")
        q = as_matrix(queries, self._dim, "queries")
        rows = check_exclude(exclude, len(q))
        ids, scores = empty_result(len(q), k)
        n = len(self._ids)
        if n == 0:
            return SearchResult(ids, scores)
        banned = [self._present(row) for row in rows] if rows is not None else [np.zeros(0, np.int64)] * len(q)
        plain = [row for row in range(len(q)) if not len(banned[row])]
        for start in range(0, len(plain), SEARCH_BATCH):
            chunk = plain[start : start + SEARCH_BATCH]
            for row, hits in zip(chunk, self._search(q[chunk], min(k, n)), strict=True):
                self._fill(ids, scores, row, hits)
        for row in range(len(q)):
            limit = min(k, n - len(banned[row]))
            if len(banned[row]) and limit > 0:
                where = f"id not in [{','.join(map(str, banned[row].tolist()))}]"
                self._fill(ids, scores, row, self._search(q[row : row + 1], limit, where)[0])
        return SearchResult(ids, scores)

    # -- save and load ------------------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._dim is not None:
            self._call("flushing", "flush", self.params["collection"])
        lite = self._session.lite
        if lite is not None:
            target = (directory / LITE_DIR).resolve()
            if target != lite:
                self._session.disconnect()  # the Lite server writes everything out when it stops; reopened on use
                _copy_database(lite, target)
        atomic_write(directory / IDS_FILE, lambda handle: np.save(handle, self._ids, allow_pickle=False))
        write_manifest(directory, KIND, dict(self.params), self._dim, len(self))

    @classmethod
    def load(cls, directory: Path) -> MilvusRetriever:
        directory = Path(directory)
        manifest = read_manifest(directory, KIND, (IDS_FILE,))
        params = dict(manifest["params"])
        try:
            ids = np.load(directory / IDS_FILE, allow_pickle=False).astype(np.int64, copy=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"the saved id list is unreadable ({exc}); save the index again", file=directory) from exc
        uri = params.get("uri")
        if uri is not None and str(uri).startswith(SERVER_SCHEMES):
            retriever = cls(**params)
        else:
            source = directory / LITE_DIR
            if not source.is_dir():
                raise DataError("the Milvus Lite database is missing; save the index again", file=source)
            private = Path(tempfile.mkdtemp(prefix="fusionrec-milvus-"))
            shutil.copytree(source, private / LITE_DIR, ignore=shutil.ignore_patterns("LOCK"))
            retriever = cls(**params, working_copy=private / LITE_DIR)
        retriever._dim = manifest["dim"]
        retriever._set_ids(ids)
        if retriever._dim is not None:
            retriever._check_collection(directory)
        return retriever

    def _check_collection(self, directory: Path) -> None:
        """The collection exists, is loaded for search and holds as many rows as the saved id list."""
        name = self.params["collection"]
        if not self._call("checking the collection", "has_collection", name):
            self.close()
            raise DataError(f"{self.where} has no collection {name!r}; build and save the index again", file=directory)
        self._call(f"loading the collection {name!r}", "load_collection", name)
        rows = self._call("counting rows", "query", name, output_fields=["count(*)"])
        count = int(rows[0]["count(*)"])
        if count != len(self._ids):
            self.close()
            raise DataError(
                f"{self.where}: the collection {name!r} holds {count} vectors but {len(self._ids)} were saved; "
                "it was changed after saving, build and save the index again",
                file=directory,
            )
