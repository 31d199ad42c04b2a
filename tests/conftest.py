from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# A stray model-hub lookup would spend ~47 s in DNS retries before failing: never let one start.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Milvus Lite talks gRPC; gRPC's fork handlers (pthread_atfork) run at every later fork of this process (each
# subprocess a test starts) and have crashed it with a segfault; processes here never use gRPC across a fork
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
# Encoders called outside the feature engine keep exported models in the default cache folder: one per test
# session, shared by its tests (each model is exported once) and never the user's ~/.cache.
if "FUSIONREC_CACHE" not in os.environ:
    os.environ["FUSIONREC_CACHE"] = tempfile.mkdtemp(prefix="fusionrec-test-cache-")
    atexit.register(shutil.rmtree, os.environ["FUSIONREC_CACHE"], True)

REPO = Path(__file__).resolve().parents[1]

FakeDist = Callable[..., Path]


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDist:
    """Create an installed-looking distribution (dist-info + module) on sys.path, without installing anything.

    ``fake_dist("acme-fusers", "1.2.0", entry_points={"acme": "acme_fusers"}, modules={"acme_fusers": SOURCE})``
    """
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    monkeypatch.syspath_prepend(str(site))
    created: list[str] = []

    def make(name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = ["[fusionrec]", *(f"{ep} = {target}" for ep, target in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        (info / "top_level.txt").write_text("\n".join(m.split(".")[0] for m in modules) + "\n")
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            created.append(module)
        return info

    yield make  # type: ignore[misc]
    for module in created:
        sys.modules.pop(module, None)
