#!/usr/bin/env bash
# kill -9 check on a real dataset: train PIPELINE uninterrupted, then train it again, kill -9 that process once
# EPOCHS epochs are logged, resume it with --resume, and compare the two runs' per-epoch validation metrics and
# final metrics. Usage: benchmarks/resume_check.sh [PIPELINE] [OUT] [EPOCHS]
set -euo pipefail
PIPELINE=${1:-benchmarks/results/ablation/base.yaml}
OUT=${2:-/tmp/fusionrec-resume-check}
EPOCHS=${3:-4}
FUSIONREC=${FUSIONREC:-.venv/bin/fusionrec}
PYTHON=${PYTHON:-.venv/bin/python}
rm -rf "$OUT" && mkdir -p "$OUT"
"$FUSIONREC" train "$PIPELINE" --out "$OUT/uninterrupted" -q > "$OUT/uninterrupted.log"
"$FUSIONREC" train "$PIPELINE" --out "$OUT/killed" -q > "$OUT/killed.log" 2>&1 &
pid=$!
until [ -f "$OUT/killed/epochs.jsonl" ] && [ "$(wc -l < "$OUT/killed/epochs.jsonl")" -ge "$EPOCHS" ]; do sleep 0.5; done
sleep 1
kill -9 "$pid"; wait "$pid" || echo "killed with exit $? after $(wc -l < "$OUT/killed/epochs.jsonl") epochs logged"
"$FUSIONREC" train "$PIPELINE" --out "$OUT/killed" --resume -q > "$OUT/resumed.log"
"$PYTHON" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
a, b = (json.loads((out / d / "metrics.json").read_text()) for d in ("uninterrupted", "killed"))
for part in ("valid", "test"):
    pick = lambda m: {k: round(v, 4) for k, v in m[part]["metrics"].items() if k in ("recall@20", "ndcg@20")}
    print(f"{part}: resumed {pick(b)}, uninterrupted {pick(a)}, identical: {a[part]['metrics'] == b[part]['metrics']}")
logs = [[json.loads(l)["valid"] for l in open(out / d / "epochs.jsonl")] for d in ("uninterrupted", "killed")]
print(f"per-epoch validation identical over {len(logs[0])} epochs: {logs[0] == logs[1]}")
sys.exit(0 if a["valid"]["metrics"] == b["valid"]["metrics"] and logs[0] == logs[1] else 1)
PY
