"""Cornac peer: train Cornac's BPR or VBPR on an exported fusionrec split and write its top-K lists.

Runs inside benchmarks/peers/.venvs/cornac (see setup.sh), never in fusionrec's venv:

    .venvs/cornac/bin/python cornac_adapter.py --split DIR --phase valid --model BPR \\
        --params '{"k": 64, "learning_rate": 0.01}' --epochs 100 --out recs.csv
    .venvs/cornac/bin/python cornac_adapter.py ... --model VBPR --features image.npz

Every interaction is an implicit positive (rating 1). VBPR reads the image vectors that export_features.py wrote
from fusionrec's feature cache (``vectors``, ``present``, ``item_ids``) and, as fusionrec's ``vbpr`` does, divides
them by the mean L2 norm of the present rows (absent rows are zero); Cornac's own min-max normalisation is off.
Lists come from the model's ``score`` over every item Cornac knows (the training items), the user's known items
masked (peer_io's protocol).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from peer_io import phase_data, summary_line, top_k, write_recs


def _image_features(path: Path) -> tuple[np.ndarray, list[str]]:
    data = np.load(path, allow_pickle=False)
    vectors = np.asarray(data["vectors"], dtype=np.float32)
    present = np.asarray(data["present"], dtype=bool)
    ids = [str(i) for i in data["item_ids"]]
    vectors = np.where(present[:, None], vectors, np.float32(0))
    if present.any():
        scale = float(np.linalg.norm(vectors[present], axis=1).mean())
        if scale > 0:
            vectors = vectors / scale
    return vectors, ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="folder written by `fusionrec data split`")
    parser.add_argument("--phase", choices=["valid", "test"], required=True)
    parser.add_argument("--model", choices=["BPR", "VBPR"], required=True)
    parser.add_argument("--params", default="{}", help="JSON of the Cornac model's constructor arguments")
    parser.add_argument("--epochs", type=int, default=100, help="BPR max_iter / VBPR n_epochs")
    parser.add_argument("--features", type=Path, help="image features (.npz from export_features.py); VBPR only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-k", type=int, default=50)
    parser.add_argument("--out", type=Path, required=True, help="the recs CSV to write (userId,itemId,rank)")
    args = parser.parse_args(argv)

    import cornac
    from cornac.data import ImageModality

    start = time.perf_counter()
    data = phase_data(args.split, args.phase)
    params = json.loads(args.params)
    triples = list(zip(data.train["userId"], data.train["itemId"], np.ones(len(data.train)), strict=True))
    train_set = cornac.data.Dataset.from_uir(triples, seed=args.seed)
    if args.model == "VBPR":
        if args.features is None:
            raise SystemExit("VBPR needs --features (the .npz written by export_features.py)")
        vectors, ids = _image_features(args.features)
        modality = ImageModality(features=vectors, ids=ids, normalized=False)
        modality.build(id_map=train_set.iid_map)
        train_set.add_modalities(item_image=modality)
        model = cornac.models.VBPR(n_epochs=args.epochs, seed=args.seed, use_gpu=False, verbose=False, **params)
    else:
        model = cornac.models.BPR(max_iter=args.epochs, seed=args.seed, verbose=False, **params)
    fit_start = time.perf_counter()
    model.fit(train_set)
    fit_seconds = time.perf_counter() - fit_start

    item_tokens = np.asarray(list(train_set.iid_map.keys()), dtype=object)
    item_index = np.asarray(list(train_set.iid_map.values()), dtype=np.int64)
    tokens = np.empty(len(item_tokens), dtype=object)
    tokens[item_index] = item_tokens
    histories = {
        u: np.asarray(sorted({train_set.iid_map[i] for i in g["itemId"]}), dtype=np.int64)
        for u, g in data.train.groupby("userId", sort=False)
    }
    lists: list[list[str]] = []
    batch = 256
    for at in range(0, len(data.users), batch):
        users = data.users[at : at + batch]
        scores = np.stack([np.asarray(model.score(train_set.uid_map[u]), dtype=np.float64) for u in users])
        best = top_k(scores, [histories[u] for u in users], args.k)
        lists.extend([[str(tokens[i]) for i in row if i >= 0] for row in best])
    rows = write_recs(args.out, data.users, lists)
    print(summary_line("cornac", args, params, data, rows, fit_seconds, start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
