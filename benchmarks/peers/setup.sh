#!/usr/bin/env bash
# Create the peers' virtual environments, separate from fusionrec's .venv (their pins clash with ours):
#   benchmarks/peers/.venvs/recbole  RecBole 1.2.1 (requirements-recbole.txt) + CPU torch
#   benchmarks/peers/.venvs/cornac   Cornac 3.0.1  (requirements-cornac.txt)  + CPU torch
# Usage: bash benchmarks/peers/setup.sh [recbole|cornac ...]   (default: both; an existing venv is reused)
# PYTHON picks the interpreter (default python3; tested with 3.11). TORCH_WHEEL may name a local CPU torch wheel;
# without it, torch==2.13.0 comes from PyTorch's CPU index. Packages install with --no-deps from the pinned lists,
# so nothing else is pulled in (RecBole's declared ray/thop/plotly are not needed by the adapter).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
DEFAULT_WHEEL=/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
if [[ -z "${TORCH_WHEEL:-}" && -f "$DEFAULT_WHEEL" ]]; then TORCH_WHEEL="$DEFAULT_WHEEL"; fi
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(recbole cornac)
for name in "${targets[@]}"; do
    venv="$HERE/.venvs/$name"
    reqs="$HERE/requirements-$name.txt"
    [[ -f "$reqs" ]] || { echo "unknown peer '$name' (no $reqs)" >&2; exit 2; }
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "creating $venv"
        "$PYTHON" -m venv "$venv"
    fi
    pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
    if [[ -n "${TORCH_WHEEL:-}" ]]; then
        "${pip[@]}" --no-deps "$TORCH_WHEEL"
    else
        "${pip[@]}" --no-deps --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
    fi
    "${pip[@]}" --no-deps -r "$reqs"
    "$venv/bin/python" -c "import importlib.metadata as m, torch, $name; print('$name', m.version('$name'), 'torch', torch.__version__)"
done
