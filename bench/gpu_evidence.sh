#!/usr/bin/env bash
# Issue 21's GPU evidence in phases, each ending inside the device's 10-minute command limit.
#
#   OUT=/some/dir bench/gpu_evidence.sh A   # pytest -m gpu, then dynamic vs static (compiled) cache
#                                           # under off, sampled, full at 128 tokens (bench/static_cache.py)
#   OUT=/some/dir bench/gpu_evidence.sh B   # bench/fidelity.py: 512 tokens off, sampled; then 128 tokens
#                                           # off, full-with-flops, off-sdpa-efficient, off-sdpa-math, full
#                                           # (phase A has full against off at 128 already)
#   OUT=/some/dir bench/gpu_evidence.sh C   # what phases A and B left on 2026-12-07: the SDPA backends
#                                           # at 128 tokens (fidelity.py off, off-sdpa-efficient, off-sdpa-math);
#                                           # full mode's lost sessions at 256 tokens (off, full, full-no-teardown:
#                                           # sessions without kernels per variant); static_cache.py at 512
#                                           # (dynamic/static x off/sampled)
#
# Run from the repository root (or a copy of it). Every result lands under $OUT: at most 8 files,
# no deeper than $OUT/x/y (what the device brings back), so logs and runs travel as one tarball.
# Variants run most valuable first; each step is bounded by `timeout` so that the phase ends by
# PHASE_SECONDS and whatever finished is written (the benches rewrite their JSON after every variant).
#
# Environment (defaults are the device's): DEVICE=cuda, MODEL=bench/configs/deepseek-ocr2-full.json,
# PYTHON=python3, PHASE_SECONDS=500, WORK=/tmp/dsocr-gpu-evidence, WHEELS=a folder of wheels the
# interpreter lacks (nvtx; installed into $WORK/site), TOKENS_A=128, TOKENS_B_LONG=512, TOKENS_B=128,
# VARIANTS_A, VARIANTS_B_LONG, VARIANTS_B. A CPU dry-run with the embedded model:
#   OUT=$(mktemp -d) DEVICE=cpu MODEL=capture/embedded/tiny-deepseek-ocr2.json PYTHON=.venv/bin/python \
#       TOKENS_A=8 TOKENS_B_LONG=12 TOKENS_B=8 bench/gpu_evidence.sh A
set -uo pipefail

PHASE=${1:?usage: bench/gpu_evidence.sh A|B|C}
[[ $PHASE == [ABC] ]] || { echo "Error: unknown phase $PHASE (A, B or C)"; exit 2; }
: "${OUT:?set OUT to the results folder}"
DEVICE=${DEVICE:-cuda}
MODEL=${MODEL:-bench/configs/deepseek-ocr2-full.json}
PYTHON=${PYTHON:-python3}
# An interpreter given by path stays valid after a cd (not resolved further: a venv's python is a link).
[[ $PYTHON == */* ]] && PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
PHASE_SECONDS=${PHASE_SECONDS:-500}
WORK=${WORK:-/tmp/dsocr-gpu-evidence}
TOKENS_A=${TOKENS_A:-128}
TOKENS_B_LONG=${TOKENS_B_LONG:-512}
TOKENS_B=${TOKENS_B:-128}
VARIANTS_A=${VARIANTS_A:-dynamic-off,static-off,static-sampled,dynamic-sampled,static-full,dynamic-full}
VARIANTS_B_LONG=${VARIANTS_B_LONG:-off,sampled}
VARIANTS_B=${VARIANTS_B:-off,full-with-flops,off-sdpa-efficient,off-sdpa-math,full}
TOKENS_C_SDPA=${TOKENS_C_SDPA:-128}
TOKENS_C_FULL=${TOKENS_C_FULL:-256}
TOKENS_C_STATIC=${TOKENS_C_STATIC:-512}
VARIANTS_C_SDPA=${VARIANTS_C_SDPA:-off,off-sdpa-efficient,off-sdpa-math}
VARIANTS_C_FULL=${VARIANTS_C_FULL:-off,full,full-teardown}
VARIANTS_C_STATIC=${VARIANTS_C_STATIC:-dynamic-off,static-off,static-sampled,dynamic-sampled}
#: Seconds kept back at the end of the phase for packing the logs.
PACK_SECONDS=20
#: The device brings back files up to 16 MiB.
TARBALL_BYTES=$((15 * 1024 * 1024))
#: The GPU tests get at most this long (the compiled-decode test compiles the tiny model once).
TESTS_SECONDS=200

export PYTHONUNBUFFERED=1
STARTED=$SECONDS
REPO=$(pwd)
mkdir -p "$OUT" "$WORK"
LOG="$OUT/phase-$PHASE.log"
exec > >(tee -a "$LOG") 2>&1

seconds_left() { echo $((PHASE_SECONDS - PACK_SECONDS - (SECONDS - STARTED))); }

# Run a step under `timeout` with what is left of the phase (at most $1 seconds if given > 0).
bounded() {
    local cap=$1 left
    shift
    left=$(seconds_left)
    if ((cap > 0 && cap < left)); then left=$cap; fi
    if ((left < 10)); then
        echo "== skipped (no time left): $*"
        return 124
    fi
    echo "== $(date -u +%T) [$((SECONDS - STARTED)) s] ($left s allowed) $*"
    timeout -k 10 "$left" "$@"
    local status=$?
    echo "== exit $status after $((SECONDS - STARTED)) s"
    return $status
}

# What the device lacks: nvtx from carried wheels; dsocr laid out as its wheel lays it out
# (pyproject's package-dir), so nothing is built and no network or setuptools is needed.
setup() {
    local site="$WORK/site"
    rm -rf "$site" && mkdir -p "$site"
    if ! "$PYTHON" -c 'import nvtx' 2>/dev/null; then
        local wheels=("${WHEELS:-../../.whl}"/*.whl)
        [[ -e ${wheels[0]} ]] || { echo "Error: nvtx missing and no wheels in ${WHEELS:-../../.whl}"; exit 1; }
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" "${wheels[@]}" || exit 1
    fi
    "$PYTHON" - "$site" <<'EOF' || exit 1
import shutil, sys, tomllib
from pathlib import Path

site = Path(sys.argv[1])
package_dirs = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
for package, folder in sorted(package_dirs.items()):  # "dsocr" first, then its sub-packages
    shutil.copytree(folder, site / package.replace(".", "/"), ignore=shutil.ignore_patterns("__pycache__"))
EOF
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    # -P: the repository's own dsocr/ folder must not shadow the laid-out package.
    (cd "$WORK" && "$PYTHON" -P -c 'import nvtx, dsocr.cli, dsocr.capture; print("dsocr from", dsocr.__file__)') || exit 1
}

machine() {
    {
        date -u
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.current.sm --format=csv 2>&1
        nproc
        "$PYTHON" -c 'import torch, transformers, pyarrow; print(torch.__version__, torch.version.cuda,
torch.cuda.is_available(), transformers.__version__, pyarrow.__version__)'
    } 2>&1 | tee "$OUT/machine.txt"
}

# Capture logs (and, for phase A, the compiled full-profile run for analyze/HTA checks here).
pack() {
    local items=()
    mapfile -t items < <(cd "$WORK" && find . -maxdepth 2 \( -name '*.log' -o -name 'pytest-*.xml' \) | sort)
    if [[ $PHASE == A && -d $WORK/static/run-static-full-$TOKENS_A ]]; then
        items+=("./static/run-static-full-$TOKENS_A")
    fi
    local tarball="$OUT/phase-$PHASE-logs.tar.gz"
    ((${#items[@]})) || return 0
    tar -C "$WORK" -czf "$tarball" --exclude analysis "${items[@]}"
    if (($(stat -c %s "$tarball") > TARBALL_BYTES)); then  # keep the first warm image's trace only
        tar -C "$WORK" -czf "$tarball" --exclude analysis --exclude 'image0000000-*' --exclude 'image0000002-*' \
            "${items[@]}"
    fi
    ls -l "$OUT"
}
trap pack EXIT

phase_a() {
    local gpu_tests
    rm -rf "$WORK/static"
    mapfile -t gpu_tests < <(grep -l 'pytest.mark.gpu' tests/test_*.py)
    # -P and a cwd-free sys.path: the tests import the laid-out dsocr, their helpers come from tests/.
    bounded "$TESTS_SECONDS" "$PYTHON" -P -m pytest -m gpu -q -p no:cacheprovider -p no:xdist \
        --junitxml="$WORK/pytest-gpu.xml" "${gpu_tests[@]}"
    bounded 0 "$PYTHON" bench/static_cache.py --model "$MODEL" --device "$DEVICE" --tokens "$TOKENS_A" \
        --variants "$VARIANTS_A" --out "$WORK/static" --json "$OUT/static-cache-$TOKENS_A.json"
}

phase_b() {
    rm -rf "$WORK/fidelity-$TOKENS_B_LONG" "$WORK/fidelity-$TOKENS_B"
    bounded 0 "$PYTHON" bench/fidelity.py --model "$MODEL" --device "$DEVICE" --tokens "$TOKENS_B_LONG" \
        --variants "$VARIANTS_B_LONG" --out "$WORK/fidelity-$TOKENS_B_LONG" --json "$OUT/fidelity-$TOKENS_B_LONG.json"
    bounded 0 "$PYTHON" bench/fidelity.py --model "$MODEL" --device "$DEVICE" --tokens "$TOKENS_B" \
        --variants "$VARIANTS_B" --out "$WORK/fidelity-$TOKENS_B" --json "$OUT/fidelity-$TOKENS_B.json"
}

phase_c() {
    rm -rf "$WORK/sdpa-$TOKENS_C_SDPA" "$WORK/full-$TOKENS_C_FULL" "$WORK/static"
    bounded 0 "$PYTHON" bench/fidelity.py --model "$MODEL" --device "$DEVICE" --tokens "$TOKENS_C_SDPA" \
        --variants "$VARIANTS_C_SDPA" --out "$WORK/sdpa-$TOKENS_C_SDPA" --json "$OUT/sdpa-$TOKENS_C_SDPA.json"
    bounded 0 "$PYTHON" bench/fidelity.py --model "$MODEL" --device "$DEVICE" --tokens "$TOKENS_C_FULL" \
        --variants "$VARIANTS_C_FULL" --out "$WORK/full-$TOKENS_C_FULL" --json "$OUT/full-sessions-$TOKENS_C_FULL.json"
    bounded 0 "$PYTHON" bench/static_cache.py --model "$MODEL" --device "$DEVICE" --tokens "$TOKENS_C_STATIC" \
        --variants "$VARIANTS_C_STATIC" --out "$WORK/static" --json "$OUT/static-cache-$TOKENS_C_STATIC.json"
}

echo "== phase $PHASE on $DEVICE, model $MODEL, $PHASE_SECONDS s, from $REPO"
setup
machine
case $PHASE in
    A) phase_a ;;
    B) phase_b ;;
    C) phase_c ;;
esac
echo "== phase $PHASE done after $((SECONDS - STARTED)) s"
