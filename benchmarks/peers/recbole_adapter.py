"""RecBole peer: train one RecBole model on an exported fusionrec split and write its top-K lists.

Runs inside benchmarks/peers/.venvs/recbole (see setup.sh), never in fusionrec's venv:

    .venvs/recbole/bin/python recbole_adapter.py --split DIR --phase valid --model BPR \\
        --params '{"embedding_size": 64}' --epochs 50 --out recs.csv

The split's CSVs become RecBole atomic files (``benchmark_filename``: the training part is RecBole's train file,
so RecBole splits nothing itself). General models (BPR, LightGCN, MultiVAE) train on the (user, item) pairs;
SASRec trains on each user's items ordered by timestamp, equal timestamps as the split orders them (file order by
default, peer_io.phase_data), one target per position with the up to
``MAX_ITEM_LIST_LENGTH`` items before it (RecBole's own augmentation, written out as ``item_id_list``). Training
runs for a fixed number of epochs with no validation inside RecBole (the epoch count is a setting chosen on
validation by run.py). Lists come from the model's ``full_sort_predict`` over every item, with the user's known
items, RecBole's padding item and items absent from training masked (peer_io's protocol).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from peer_io import phase_data, summary_line, top_k, write_recs

SEQUENTIAL = {"SASRec"}
DATASET = "fr"


def _write_atomic_files(root: Path, train: pd.DataFrame, sequential: bool, max_len: int) -> None:
    folder = root / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    if not sequential:
        rows = train.rename(
            columns={"userId": "user_id:token", "itemId": "item_id:token", "timestamp": "timestamp:float"}
        )
        for part in ("train", "valid", "test"):
            # valid/test are required by benchmark_filename but never read: no evaluation runs inside RecBole
            (rows if part == "train" else rows.head(1)).to_csv(
                folder / f"{DATASET}.{part}.inter", sep="\t", index=False
            )
        return
    users, items, lists = [], [], []
    for user, group in train.groupby("userId", sort=True):
        seq = group["itemId"].tolist()  # already in the split's order (phase_data)
        for t in range(1, len(seq)):
            users.append(user)
            items.append(seq[t])
            lists.append(" ".join(seq[max(0, t - max_len) : t]))
    frame = pd.DataFrame({"user_id:token": users, "item_id_list:token_seq": lists, "item_id:token": items})
    for part in ("train", "valid", "test"):
        (frame if part == "train" else frame.head(1)).to_csv(folder / f"{DATASET}.{part}.inter", sep="\t", index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="folder written by `fusionrec data split`")
    parser.add_argument("--phase", choices=["valid", "test"], required=True)
    parser.add_argument("--model", required=True, help="RecBole model name: BPR, LightGCN, MultiVAE, SASRec")
    parser.add_argument("--params", default="{}", help="JSON of RecBole config entries for the model")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-k", type=int, default=50)
    parser.add_argument("--out", type=Path, required=True, help="the recs CSV to write (userId,itemId,rank)")
    parser.add_argument("--work", type=Path, help="scratch folder for atomic files (default: next to --out)")
    args = parser.parse_args(argv)

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.data.interaction import Interaction
    from recbole.utils import get_model, get_trainer, init_seed

    start = time.perf_counter()
    data = phase_data(args.split.resolve(), args.phase)
    sequential = args.model in SEQUENTIAL
    params = json.loads(args.params)
    max_len = int(params.get("MAX_ITEM_LIST_LENGTH", 50))
    args.out = args.out.resolve()
    work = (args.work or args.out.with_suffix(".recbole")).resolve()
    _write_atomic_files(work / "data", data.train, sequential, max_len)
    os.chdir(work)  # RecBole writes log_tensorboard/ (and any log/) into the working directory

    config_dict = {
        "data_path": str(work / "data"),
        "checkpoint_dir": str(work / "saved"),
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": None,
        "eval_args": {"group_by": "user", "order": "TO" if sequential else "RO", "mode": "full"},
        "epochs": args.epochs,
        "seed": args.seed,
        "reproducibility": True,
        "use_gpu": False,
        "show_progress": False,
        "state": "WARNING",
        "worker": 0,
        **params,
    }
    if sequential:
        config_dict.update(
            {"alias_of_item_id": ["item_id_list"], "MAX_ITEM_LIST_LENGTH": max_len, "train_neg_sample_args": None}
        )
        config_dict.pop("TIME_FIELD")
    config = Config(model=args.model, dataset=DATASET, config_dict=config_dict)
    logging.getLogger().setLevel(logging.WARNING)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    fit_start = time.perf_counter()
    trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
    fit_seconds = time.perf_counter() - fit_start

    # scoring: every item of RecBole's catalogue; 0 is RecBole's padding item
    item_field, user_field = config["ITEM_ID_FIELD"], config["USER_ID_FIELD"]
    n_items = dataset.item_num
    tokens = np.asarray(dataset.field2id_token[item_field]).astype(str)
    token_to_id = {t: i for i, t in enumerate(tokens)}
    trained = np.zeros(n_items, dtype=bool)
    trained[[token_to_id[t] for t in data.train["itemId"].unique()]] = True
    histories = {u: [token_to_id[t] for t in g["itemId"]] for u, g in data.train.groupby("userId", sort=False)}
    model.eval()
    lists: list[list[str]] = []
    batch = 256
    with torch.no_grad():
        for at in range(0, len(data.users), batch):
            users = data.users[at : at + batch]
            if sequential:
                seq = np.zeros((len(users), max_len), dtype=np.int64)
                lengths = np.zeros(len(users), dtype=np.int64)
                for row, user in enumerate(users):
                    recent = histories[user][-max_len:]
                    seq[row, : len(recent)] = recent
                    lengths[row] = len(recent)
                inter = Interaction(
                    {model.ITEM_SEQ: torch.from_numpy(seq), model.ITEM_SEQ_LEN: torch.from_numpy(lengths)}
                )
            else:
                ids = dataset.token2id(user_field, users)
                inter = Interaction({user_field: torch.as_tensor(np.asarray(ids), dtype=torch.long)})
            scores = model.full_sort_predict(inter).reshape(len(users), -1).cpu().numpy()
            scores = scores[:, :n_items]
            scores[:, ~trained] = -np.inf
            known = [np.asarray(sorted(set(histories[u])), dtype=np.int64) for u in users]
            best = top_k(scores, known, args.k)
            lists.extend([[tokens[i] for i in row if i >= 0] for row in best])
    rows = write_recs(args.out, data.users, lists)
    print(summary_line("recbole", args, params, data, rows, fit_seconds, start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
