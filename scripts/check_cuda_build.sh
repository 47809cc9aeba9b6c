#!/usr/bin/env bash
# Compile-check the CUDA kernels of cuda_ext without a GPU (CI runs it wherever nvcc exists).
#
# The CPU torch of .venv cannot compile .cu files, so this uses a second virtual environment with
# the CUDA build of torch (created when missing: torch==2.14.1, CUDA 13.0, about 1 minute, 5.4 GB),
# copies the repository's sources (setup.py, cuda_ext/) into a temporary directory and builds
# there with FORCE_CUDA=1, so the CPU extension in the working tree is never overwritten.
# First it compiles scripts/cuda_arch_probe.cu for every arch of setup.py's DEFAULT arch list (the
# one a user's `FORCE_CUDA=1 pip install` gets from this nvcc), with the build's own -gencode flags.
# It fails when the default list does not compile, when a source does not compile, when a .cu
# produced no object, when a *_cuda function is missing from the module, or when the module does
# not import (link errors).
#
# Environment (defaults): CUDA_VENV (.venv-cuda next to the repo's .venv), CUDA_HOME
# (/usr/local/cuda), TORCH_CUDA_ARCH_LIST (9.0: one arch keeps the check under ~5 minutes on 2
# cores), MAX_JOBS (2), KEEP_BUILD=1 keeps the temporary directory.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CUDA_VENV="${CUDA_VENV:-$REPO/.venv-cuda}"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-2}"
export FORCE_CUDA=1
unset FORCE_ONLY_CPU
CUDA_TORCH="torch==2.14.1"

log() { echo "[check_cuda_build] $*"; }
die() { echo "[check_cuda_build] ERROR: $*" >&2; exit 1; }

[ -x "$CUDA_HOME/bin/nvcc" ] || die "no nvcc at $CUDA_HOME/bin/nvcc (set CUDA_HOME to a CUDA toolkit)"
export PATH="$CUDA_HOME/bin:$PATH"

if ! "$CUDA_VENV/bin/python" -c "import torch, ninja; assert torch.version.cuda" 2>/dev/null; then
  log "creating $CUDA_VENV with the CUDA build of torch ($CUDA_TORCH)"
  python3 -m venv "$CUDA_VENV"
  "$CUDA_VENV/bin/pip" install -q "$CUDA_TORCH" numpy ninja setuptools wheel
fi
PY="$CUDA_VENV/bin/python"
log "torch $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)'), $("$CUDA_HOME/bin/nvcc" --version | tail -n 2 | head -n 1)"

# 1. setup.py's DEFAULT arch list for this nvcc (what a user's `FORCE_CUDA=1 pip install` builds):
# compile one small kernel for every arch of it with the same -gencode flags as the real build.
DEFAULT_ARCHS="$(cd "$REPO" && "$PY" -c '
import importlib.util
spec = importlib.util.spec_from_file_location("pointclora_setup", "setup.py")
setup = importlib.util.module_from_spec(spec)
spec.loader.exec_module(setup)  # not __main__: defines the helpers, builds nothing
print(setup.default_arch_list(setup.toolkit_cuda_version()))')"
ARCH_FLAGS="$(TORCH_CUDA_ARCH_LIST="$DEFAULT_ARCHS" "$PY" -c '
from torch.utils.cpp_extension import _get_cuda_arch_flags
print(" ".join(_get_cuda_arch_flags()))')"
PROBE_OUT="$(mktemp -d -t cuda_arch_probe.XXXXXX)"
log "default arch list for this nvcc: '$DEFAULT_ARCHS'; compiling scripts/cuda_arch_probe.cu for each"
start=$(date +%s)
# shellcheck disable=SC2086  # ARCH_FLAGS is a list of -gencode flags
"$CUDA_HOME/bin/nvcc" -O3 --fmad=false -I "$REPO/cuda_ext/csrc" $ARCH_FLAGS -c "$REPO/scripts/cuda_arch_probe.cu" \
  -o "$PROBE_OUT/probe.o" || die "nvcc cannot compile for the default arch list '$DEFAULT_ARCHS' ($ARCH_FLAGS)"
# every arch must be in the object (where cuobjdump exists: not in every toolkit install)
if [ -x "$CUDA_HOME/bin/cuobjdump" ]; then
  LISTED="$("$CUDA_HOME/bin/cuobjdump" --list-elf "$PROBE_OUT/probe.o")"
  for arch in $DEFAULT_ARCHS; do
    cc="${arch%+PTX}"; cc="${cc/./}"
    grep -q "sm_${cc}\b" <<<"$LISTED" || die "no sm_${cc} code in the probe object for arch $arch"
  done
fi
rm -rf "$PROBE_OUT"
log "OK: the default arch list compiles with this nvcc ($(($(date +%s) - start)) s): $ARCH_FLAGS"

# 2. the full build of every source, for TORCH_CUDA_ARCH_LIST (one arch by default)
BUILD="$(mktemp -d -t cuda_ext_build.XXXXXX)"
if [ "${KEEP_BUILD:-0}" = "1" ]; then log "keeping $BUILD"; else trap 'rm -rf "$BUILD"' EXIT; fi

# Tracked files plus new, not ignored ones (so an uncommitted kernel is checked too); no *.so.
(cd "$REPO" && git ls-files --cached --others --exclude-standard -z -- setup.py cuda_ext) |
  (cd "$REPO" && xargs -0 cp --parents -t "$BUILD")
mapfile -t CU < <(cd "$BUILD" && find cuda_ext/csrc -name '*.cu' | sort)
[ "${#CU[@]}" -gt 0 ] || die "no .cu sources under cuda_ext/csrc"
log "building ${#CU[@]} .cu files for arch $TORCH_CUDA_ARCH_LIST in $BUILD"

start=$(date +%s)
(cd "$BUILD" && "$PY" setup.py build_ext --inplace >build.log 2>&1) || {
  { grep -E -B2 -A8 'error' "$BUILD/build.log" || tail -n 60 "$BUILD/build.log"; } | head -n 120 >&2 || true
  die "the CUDA build failed (first errors above; full log: $BUILD/build.log with KEEP_BUILD=1)"
}
log "built in $(($(date +%s) - start)) s"

# every .cu must have produced an object (a FORCE_CUDA that fell back to CppExtension would not)
for cu in "${CU[@]}"; do
  base="$(basename "$cu" .cu)"
  [ -n "$(find "$BUILD/build" -name "$base.o" -path "*/$(dirname "$cu")/*")" ] || die "no object file for $cu"
done

SO="$(find "$BUILD/cuda_ext" -maxdepth 1 -name '_C*.so' | head -n 1)"
[ -n "$SO" ] || die "the build produced no cuda_ext/_C*.so"
# every *_cuda function the headers declare must be defined in the module
# (declarations start at column 0; the dispatchers' calls are indented and `is_cuda()` is a method)
mapfile -t FUNCS < <(grep -h '^[a-z].*_cuda(' "$BUILD"/cuda_ext/csrc/*/*.h | grep -o '[a-z_0-9]*_cuda(' |
  grep -vx 'is_cuda(' | tr -d '(' | sort -u)
SYMBOLS="$(nm -C --defined-only "$SO")"
for f in "${FUNCS[@]}"; do
  grep -q " ${f}(" <<<"$SYMBOLS" || die "$f is declared in a header but not defined in $SO"
done

# importing resolves every symbol against libtorch / libcudart: this is the link check
"$PY" - "$SO" <<'EOF'
import importlib.util
import sys

import torch  # noqa: F401  (loads libtorch before the extension)

spec = importlib.util.spec_from_file_location("cuda_ext._C", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
names = sorted(n for n in dir(module) if not n.startswith("_"))
print(f"[check_cuda_build] imported {sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} functions: {', '.join(names)}")
EOF
log "OK: ${#CU[@]} .cu files and ${#FUNCS[@]} *_cuda functions compile and link"
