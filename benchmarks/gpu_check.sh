#!/usr/bin/env bash
# GPU checks of the faiss retriever, for a machine with an NVIDIA GPU (nothing here runs without one):
#   1. the driver (nvidia-smi) and a faiss build that sees the GPU;
#   2. the retriever tests (tests/test_retrievers.py: with a GPU, device auto searches on it, and the GPU test
#      that is skipped elsewhere runs) and the benchmark's tests;
#   3. `fusionrec bench retrieval` on SIZES × DIM synthetic vectors, once with --device cpu and once with
#      --device cuda, same indexes (Flat and IVF: FAISS has no GPU HNSW), then a cuda-against-cpu summary;
#   and (step 1b) a distributed-training smoke test: `torchrun --nproc_per_node min(2, GPUs)` with nccl, beside a
#   1-process run (skipped when torch sees no CUDA device).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default: $OUT, else ./gpu-results)
#
# Environment: VENV (default .venv-gpu) is used when it exists, else created with the gpu and dev extras, which
# needs PyPI; on a machine without network, point VENV at a ready environment. SIZES (default 1000000), DIM
# (default 128), STEP_TIMEOUT (seconds per step, default 1500). Exits 0 when every step passed, 1 when a test or
# a run failed (the other steps still run), 3 when there is no usable GPU.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-./gpu-results}}"
VENV="${VENV:-.venv-gpu}"
SIZES="${SIZES:-1000000}"
DIM="${DIM:-128}"
STEP_TIMEOUT="${STEP_TIMEOUT:-1500}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$OUT_DIR"
SUMMARY="$OUT_DIR/summary.txt"
: >"$SUMMARY"
say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }
status=0

# 1. the GPU and faiss -------------------------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1; then
    say "no nvidia-smi: this machine has no NVIDIA driver; nothing to check"
    exit 3
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT_DIR/nvidia-smi.txt" || {
    say "nvidia-smi failed: $(cat "$OUT_DIR/nvidia-smi.txt")"
    exit 3
}
say "GPU: $(head -n 1 "$OUT_DIR/nvidia-smi.txt")"

if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV with the gpu and dev extras (needs PyPI)"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip "setuptools>=69" wheel
    "$VENV/bin/python" -m pip install -q -c requirements/constraints.txt -e ".[gpu,dev]" \
        --config-settings editable_mode=strict
fi
PY="$VENV/bin/python"

# 1b. distributed training smoke test: torchrun + DistributedDataParallel with nccl, one rank per GPU (at most 2),
#     on the synthetic catalogue of tests/train_fixtures.py, beside a 1-process run with the same global batch
NGPU="$("$PY" -c 'import torch, torch.distributed as d; print(torch.cuda.device_count() if d.is_nccl_available() else 0)' 2>/dev/null || echo 0)"
if [[ "$NGPU" == "0" ]]; then
    say "ddp: torch sees no CUDA device (or has no nccl): distributed training smoke test skipped"
else
    NPROC=$(( NGPU < 2 ? NGPU : 2 ))
    DDP="$OUT_DIR/ddp"
    rm -rf "$DDP"
    "$PY" -c "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; from train_fixtures import write_pipeline; write_pipeline(Path(sys.argv[1]), train='{epochs: 4, batch_size: 64, lr: 0.01, patience: 10, seed: 0, device: cuda}')" "$DDP"
    say "ddp: torchrun --nproc_per_node $NPROC (nccl) against 1 process"
    if timeout "$STEP_TIMEOUT" "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" --no-python \
        "$VENV/bin/fusionrec" train "$DDP/pipeline.yaml" --out "$DDP/runs/ranks" -q >"$OUT_DIR/ddp.log" 2>&1 \
        && timeout "$STEP_TIMEOUT" "$VENV/bin/fusionrec" train "$DDP/pipeline.yaml" --out "$DDP/runs/one" -q \
        >>"$OUT_DIR/ddp.log" 2>&1; then
        say "  $("$PY" -c "import json, sys; r = [json.load(open(f'{sys.argv[1]}/runs/{n}/metrics.json'))['valid']['metrics']['recall@20'] for n in ('ranks', 'one')]; print(f'valid recall@20: {r[0]:.4f} with $NPROC rank(s), {r[1]:.4f} in 1 process')" "$DDP")"
    else
        status=1
        say "  DDP TRAINING FAILED: $(tail -n 1 "$OUT_DIR/ddp.log") (see $OUT_DIR/ddp.log)"
    fi
fi

gpus() { "$PY" -c 'import faiss; print(faiss.get_num_gpus())' 2>/dev/null || echo 0; }
# faiss-cpu (a core dependency) and faiss-gpu install the same `faiss` package: whichever came last wins
if [[ "$(gpus)" == "0" ]]; then
    say "faiss sees no GPU: replacing faiss-cpu with faiss-gpu"
    "$PY" -m pip uninstall -y -q faiss-cpu || true
    "$PY" -m pip install -q --force-reinstall --no-deps "faiss-gpu>=1.8" || true
fi
say "$("$PY" -c 'import faiss; print("faiss", faiss.__version__, "sees", faiss.get_num_gpus(), "GPU(s)")' 2>&1)"
if [[ "$(gpus)" == "0" ]]; then
    say "faiss still sees no GPU (CUDA runtime or driver mismatch?): stopping"
    exit 3
fi

# 2. tests ---------------------------------------------------------------------------------------------------------
say "tests: tests/test_retrievers.py tests/test_bench_retrieval.py"
if timeout "$STEP_TIMEOUT" "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_retrievers.py \
    tests/test_bench_retrieval.py --junitxml "$OUT_DIR/pytest.xml" >"$OUT_DIR/pytest.txt" 2>&1; then
    say "tests passed: $(tail -n 1 "$OUT_DIR/pytest.txt")"
else
    status=1
    say "TESTS FAILED: $(tail -n 1 "$OUT_DIR/pytest.txt") (see $OUT_DIR/pytest.txt)"
fi

# 3. the benchmark, cpu then cuda ----------------------------------------------------------------------------------
INDEXES=(
    --index Flat
    --index "IVF4096,Flat|nprobe=8" --index "IVF4096,Flat|nprobe=32" --index "IVF4096,Flat|nprobe=128"
    --index "IVF4096,PQ32np|nprobe=32"
)
for device in cpu cuda; do
    say "bench: --device $device, --sizes $SIZES, --dim $DIM"
    if timeout "$STEP_TIMEOUT" "$VENV/bin/fusionrec" bench retrieval --sizes "$SIZES" --dim "$DIM" \
        --device "$device" "${INDEXES[@]}" --out "$OUT_DIR/$device" >"$OUT_DIR/bench-$device.log" 2>&1; then
        say "  done: $OUT_DIR/$device/retrieval.{json,md,png}"
    else
        status=1
        say "  BENCH FAILED on $device: $(grep -v '^WARNING clustering' "$OUT_DIR/bench-$device.log" | tail -n 1)"
    fi
done

# 4. summary: cuda against cpu -----------------------------------------------------------------------------------
"$PY" - "$OUT_DIR" <<'EOF' | tee -a "$SUMMARY" || status=1
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
runs = {}
for device in ("cpu", "cuda"):
    path = out / device / "retrieval.json"
    if path.is_file():
        runs[device] = {e["label"]: e for d in json.loads(path.read_text())["datasets"] for e in d["results"]}
if not runs:
    sys.exit("no benchmark results to compare")
print("index | recall@10 cpu / cuda | batch-1024 q/s cpu / cuda (cuda÷cpu) | batch-1 q/s cpu / cuda | "
      "fusionrec÷raw on cuda (batch 1 / 1024)")
labels = list(dict.fromkeys(label for results in runs.values() for label in results))
for label in labels:
    cpu, cuda = runs.get("cpu", {}).get(label, {}), runs.get("cuda", {}).get(label, {})
    if "error" in cpu or "error" in cuda or not cpu or not cuda:
        print(f"{label} | cpu: {cpu.get('error', 'ok' if cpu else 'missing')} | cuda: "
              f"{cuda.get('error', 'ok' if cuda else 'missing')}")
        continue
    big = cuda["batch"]["fusionrec_qps"] / cpu["batch"]["fusionrec_qps"]
    print(f"{label} | {cpu['recall_at_10']:.3f} / {cuda['recall_at_10']:.3f} | "
          f"{cpu['batch']['fusionrec_qps']:,.0f} / {cuda['batch']['fusionrec_qps']:,.0f} ({big:.1f}×) | "
          f"{cpu['batch1']['fusionrec_qps']:,.0f} / {cuda['batch1']['fusionrec_qps']:,.0f} | "
          f"{cuda['batch1']['ratio']:.3f} / {cuda['batch']['ratio']:.3f}")
EOF

say "results in $OUT_DIR (summary.txt, pytest.txt, bench-*.log, cpu/, cuda/); exit status $status"
exit "$status"
