"""Export a pipeline's item features from fusionrec's feature cache for the peers (Cornac's VBPR).

Runs in fusionrec's venv:

    .venv/bin/python benchmarks/peers/export_features.py examples/movielens-small.yaml --out image.npz

Loads the pipeline's data and features through :func:`fusionrec.core.engine.features.pipeline_features` (the cache the
pipeline's own runs use: a warm cache encodes nothing) and writes one ``.npz`` holding ``vectors`` (``(n_items,
dim)`` float32, in fusionrec's internal item order, zero where absent), ``present`` (bool) and ``item_ids`` (the
original ids, as strings).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np


def export(pipeline: Path, out: Path, modality: str = "image") -> dict[str, object]:
    """Write ``modality``'s features of ``pipeline`` to ``out`` (.npz); returns a summary."""
    from fusionrec.core.assembly import loading
    from fusionrec.core.engine.features import pipeline_features
    from fusionrec.core.io import atomic_write
    from fusionrec.registry import get_registry

    registry = get_registry()
    loaded = loading.load(pipeline, registry)
    run = pipeline_features(loaded, registry)
    if modality not in run.matrices:
        raise SystemExit(f"{pipeline}: no '{modality}' features; the pipeline encodes {sorted(run.matrices)}")
    matrix = run.matrices[modality]
    buffer = io.BytesIO()
    np.savez(
        buffer,
        vectors=np.asarray(matrix.vectors, dtype=np.float32),
        present=np.asarray(matrix.present, dtype=bool),
        item_ids=np.asarray([str(i) for i in loaded.data.item_ids]),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda handle: handle.write(buffer.getvalue()))
    return {
        "pipeline": str(pipeline),
        "modality": modality,
        "encoder": matrix.report.encoder,
        "items": len(matrix.present),
        "present": int(matrix.present.sum()),
        "dim": int(matrix.vectors.shape[1]),
        "out": str(out),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write")
    parser.add_argument("--modality", default="image", help="the key under the pipeline's `encoders:`")
    args = parser.parse_args(argv)
    print(json.dumps(export(args.pipeline, args.out, args.modality)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
