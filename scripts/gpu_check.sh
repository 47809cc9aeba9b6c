#!/usr/bin/env bash
# One-shot verification of the GPU path: ONE run on a GPU machine (16 cores, one H200 here) tells
# whether cuda_ext's CUDA build and kernels, mixed precision and sdpa attention work, in < 10 min.
#
#   bash scripts/gpu_check.sh                          # on the GPU machine, from anywhere in the checkout
#   OUT=/tmp/x bash scripts/gpu_check.sh               # results elsewhere (default /tmp/gpu_check)
#   PYTHON=.venv/bin/python bash scripts/gpu_check.sh --device cpu --small    # CPU dry run
#   bash scripts/gpu_check.sh --stages build,assert,tests                     # a subset
#
# It downloads nothing and creates no virtual environment: it installs the checkout into the python
# that is there (`pip install --no-deps --no-build-isolation --no-index -e .`, FORCE_CUDA=1 for the
# GPU's own arch, MAX_JOBS = all cores), falling back to an in-place build_ext. Every stage runs even
# when an earlier one failed, with its own time limit, and leaves a line in $OUT/summary.md:
#   env      python, torch, CUDA, nvcc, GPU
#   build    the install above (cpu: only when cuda_ext._C does not import yet)
#   assert   cuda_ext._C imports and has its CUDA kernels (cpu: imports)
#   tests    tests/test_ops_*.py + tests/test_models_attention.py (a CUDA test fails on the reference fallback)
#   compare  CUDA vs CPU kernels at the real sizes (scripts/gpu_check.py compare)
#   edge     empty and non-contiguous inputs, a side stream, repeatability (scripts/gpu_check.py edge)
#   train    full-size Point-MAE + CLoRA steps: bf16 autocast and sdpa vs fp32; pre-training under autocast
#   bench_ops    bench/point_ops.py --device cuda            -> $OUT/point_ops_cuda.md
#   bench_train  bench/train_step.py --device cuda, explicit/sdpa x fp32/bf16 -> $OUT/train_step_cuda.md
# On CUDA the two benchmark tables are also copied to bench/results/. $OUT holds at most 6 files
# (the device tool returns 8): summary.md, checks.md (the comparison tables), gpu_check.log (every
# stage's output), the two benchmark tables, and env.txt. Exit status: 0 when every stage passed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
DEVICE=cuda
SMALL=0
STAGES="env,build,assert,tests,compare,edge,train,bench_ops,bench_train"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --small) SMALL=1; shift ;;
    --stages) STAGES="$2"; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (expected --device cuda|cpu, --small, --stages a,b)" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_check.sh: --device must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;; esac

OUT="${OUT:-/tmp/gpu_check}"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET_S:-570}"  # the whole run; each stage gets at most what is left
mkdir -p "$OUT" || exit 2
rm -f "$OUT/summary.md" "$OUT/checks.md" "$OUT/gpu_check.log" "$OUT/env.txt"
LOGS="$(mktemp -d -t gpu_check_logs.XXXXXX)"
trap 'rm -rf "$LOGS"' EXIT
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export DEVICE PY LOGS REPO  # the stage functions run in a child bash (under timeout)
SMALL_FLAG=(); [ "$SMALL" = 1 ] && SMALL_FLAG=(--small)
SUFFIX="$DEVICE$([ "$SMALL" = 1 ] && echo _small)"
T0=$(date +%s)
FAILED=0

{
  echo "# GPU check ($DEVICE$([ "$SMALL" = 1 ] && echo ', small sizes: a dry run'))"
  echo
  echo "- started: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(cat /proc/sys/kernel/hostname 2>/dev/null || echo unknown), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (+ uncommitted changes)')"
  echo "- python: $PY; OUT: $OUT"
  echo
  echo "| stage | result | seconds | note |"
  echo "|---|---|---:|---|"
} >"$OUT/summary.md"

# stage NAME LIMIT_S NOTE COMMAND...: runs COMMAND with a time limit, logs it, records pass/FAIL
stage() {
  local name="$1" limit="$2" note="$3"
  shift 3
  case ",$STAGES," in *",$name,"*) ;; *) return 0 ;; esac
  local left=$((BUDGET - ($(date +%s) - T0)))
  if [ "$left" -lt 10 ]; then
    echo "| $name | skipped | 0 | no time left of the ${BUDGET} s budget |" >>"$OUT/summary.md"
    FAILED=1
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "[gpu_check] === $name (limit ${limit} s) ==="
  local start=$(date +%s) rc
  if declare -F "$1" >/dev/null; then  # a function of this script: timeout needs a program
    timeout --kill-after=10 "$limit" bash -c "$(declare -f "$1"); $1" >"$LOGS/$name.log" 2>&1
  else
    timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
  fi
  rc=$?
  local secs=$(($(date +%s) - start)) result=pass
  if [ "$rc" -ne 0 ]; then
    result="FAIL (exit $rc$([ "$rc" = 124 ] && echo ', time limit'))"
    FAILED=1
  fi
  echo "| $name | $result | $secs | $note |" >>"$OUT/summary.md"
  { echo "===== $name: $result, $secs s: $*"; cat "$LOGS/$name.log"; echo; } >>"$OUT/gpu_check.log"
  tail -n 5 "$LOGS/$name.log"
  echo "[gpu_check] $name: $result ($secs s)"
}

env_info() {
  "$PY" - <<'EOF'
import platform, sys
import torch
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())
print("cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"sm_{p.major}{p.minor}", f"{p.total_memory / 2**30:.0f} GiB", p.multi_processor_count, "SMs")
    print("bf16 supported", torch.cuda.is_bf16_supported())
EOF
  command -v nvcc && nvcc --version | tail -n 2
  [ -x /usr/local/cuda/bin/nvcc ] && /usr/local/cuda/bin/nvcc --version | tail -n 1
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  true
}

# Installs the checkout into $PY: editable, no deps, no index, no isolation; CUDA for this GPU's arch.
build() {
  if [ "$DEVICE" = cpu ] && "$PY" -c "import cuda_ext._C, pointclora.datasets" 2>/dev/null; then
    echo "cuda_ext._C imports already: nothing to build for the CPU dry run"
    return 0
  fi
  local flags=(FORCE_ONLY_CPU=1)
  if [ "$DEVICE" = cuda ]; then
    local arch
    arch="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')" || return 1
    [ -n "${CUDA_HOME:-}" ] || { [ -x /usr/local/cuda/bin/nvcc ] && export CUDA_HOME=/usr/local/cuda; }
    flags=(FORCE_CUDA=1 "TORCH_CUDA_ARCH_LIST=${GPU_CHECK_ARCH:-$arch}")
    echo "building for arch ${GPU_CHECK_ARCH:-$arch}, CUDA_HOME=${CUDA_HOME:-unset}, MAX_JOBS=$(nproc)"
  fi
  rm -f cuda_ext/_C*.so  # never test a stale extension
  if env "${flags[@]}" MAX_JOBS="$(nproc)" "$PY" -m pip install --no-deps --no-build-isolation --no-index -e .; then
    return 0
  fi
  echo "pip install -e . failed; falling back to an in-place build_ext (plus an import alias for pointclora.datasets)"
  env "${flags[@]}" MAX_JOBS="$(nproc)" "$PY" setup.py build_ext --inplace || return 1
  mkdir -p "$LOGS/site"
  cat >"$LOGS/site/sitecustomize.py" <<EOF
# pointclora.datasets is the checkout's datasets/ folder (what the editable install maps)
import importlib.abc, importlib.util, sys
class _Datasets(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pointclora.datasets":
            return importlib.util.spec_from_file_location(name, "$REPO/datasets/__init__.py",
                                                          submodule_search_locations=["$REPO/datasets"])
        return None
sys.meta_path.insert(0, _Datasets())
EOF
  echo "$LOGS/site" >"$LOGS/extra_path"
}

assert_ext() {
  "$PY" - "$DEVICE" <<'EOF'
import sys
from cuda_ext import _backend
assert _backend._C is not None, f"cuda_ext._C does not import: {_backend._IMPORT_ERROR}"
print("cuda_ext._C:", _backend._C.__file__, "with_cuda:", _backend._C.with_cuda())
if sys.argv[1] == "cuda":
    assert _backend._C.with_cuda(), "cuda_ext._C was built without CUDA"
    import torch, cuda_ext
    x = torch.rand(2, 64, 3, device="cuda")
    print("a CUDA kernel runs: fps ->", cuda_ext.furthest_point_sample(x, 4).tolist())
import pointclora.datasets  # noqa: F401  (the install maps it)
EOF
}

stage env 60 "versions" env_info
cp "$LOGS/env.log" "$OUT/env.txt" 2>/dev/null || true
stage build 360 "pip install --no-deps --no-build-isolation -e . ($DEVICE)" build
[ -f "$LOGS/extra_path" ] && export PYTHONPATH="$(cat "$LOGS/extra_path"):$PYTHONPATH"
stage assert 60 "cuda_ext._C has CUDA kernels" assert_ext
stage tests 300 "op + attention tests; fallback warning = error on CUDA" \
  "$PY" -m pytest -q -p no:cacheprovider tests/test_ops_*.py tests/test_models_attention.py
stage compare 240 "CUDA vs CPU kernels, real sizes -> checks.md" \
  "$PY" scripts/gpu_check.py compare --device "$DEVICE" "${SMALL_FLAG[@]}" --out "$OUT/checks.md"
stage edge 90 "empty / non-contiguous / side stream -> checks.md" \
  "$PY" scripts/gpu_check.py edge --device "$DEVICE" "${SMALL_FLAG[@]}" --out "$OUT/checks.md"
stage train 240 "CLoRA step bf16 / sdpa vs fp32; pre-training under autocast -> checks.md" \
  "$PY" scripts/gpu_check.py train --device "$DEVICE" "${SMALL_FLAG[@]}" --out "$OUT/checks.md"
stage bench_ops 180 "-> point_ops_$SUFFIX.md" \
  "$PY" bench/point_ops.py --device "$DEVICE" --threads "$(nproc)" "${SMALL_FLAG[@]}" --out "$OUT/point_ops_$SUFFIX.md"
TRAIN_ARGS=(--attention explicit sdpa --precision fp32 bf16)
[ "$SMALL" = 1 ] && TRAIN_ARGS+=(--methods full clora --reps 1 --warmup 1 --no-memory --batch 2 --npoints 128
  --model-opts '{"trans_dim": 48, "encoder_dims": 48, "depth": 2, "num_heads": 4, "num_group": 8, "group_size": 8}')
stage bench_train 300 "explicit/sdpa x fp32/bf16 -> train_step_$SUFFIX.md" \
  "$PY" bench/train_step.py --device "$DEVICE" "${TRAIN_ARGS[@]}" --out "$OUT/train_step_$SUFFIX.md"

if [ "$DEVICE" = cuda ] && [ "$SMALL" = 0 ]; then
  for f in point_ops_cuda.md train_step_cuda.md; do
    [ -f "$OUT/$f" ] && cp "$OUT/$f" bench/results/ && echo "[gpu_check] copied $f to bench/results/"
  done
fi
{
  echo
  echo "- finished: $(date -u '+%H:%M:%S UTC'), $(($(date +%s) - T0)) s in all; overall: $([ "$FAILED" = 0 ] && echo PASS || echo FAIL)"
} >>"$OUT/summary.md"
cat "$OUT/summary.md"
exit "$FAILED"
