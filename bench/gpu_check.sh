#!/usr/bin/env bash
# GPU check of the Quaff engine, under 5 minutes on one GPU, with the machine's own python3
# (torch, transformers, peft and accelerate; nothing is installed or downloaded; the packages it
# imports are listed in bench/gpu_check_packages.txt and kept there by tests/bench/test_gpu_check.py):
#   1. every int8 backend of the device against an exact int8 reference (bench/gpu_kernels.py),
#   2. the model ladder (bench/ladder.py): SmolLM2-135M (its shape: the GGUF does not travel),
#      Qwen2.5-0.5B and Llama-3.2-1B shapes (8 layers), 4 x 256 and 1 x 1024, Quaff defaults
#      against bf16-autocast PEFT LoRA, same loss, interleaved, with peak GPU memory at 4 x 256.
# Writes kernels.md, ladder.md / ladder.json, the logs and summary.txt to $OUT
# (default: bench/out/gpu_check). The training job and data-parallel runs need the project's
# environment (trl, celery) and are covered by `make test` and bench/scaling.py instead.
#
#   bash bench/gpu_check.sh            # on a machine with a CUDA GPU
#   bash bench/gpu_check.sh --dry-run  # CPU self-check of the same steps at tiny sizes (CI)
set -euo pipefail

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$arg' (use --dry-run or nothing)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then
  PY="$ROOT/.venv/bin/python"
else
  PY="$(command -v python3 || true)"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-$ROOT/bench/out/gpu_check}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$OUT/inductor-cache}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$SUMMARY"; }
fail() { log "FAILED: $*"; exit 1; }

[ -n "$PY" ] && [ -x "$PY" ] || fail "no python (set PYTHON, or have python3 on the PATH)"
if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu
  LADDER=(--models llama128 --shapes 1x32 --layers 1 --repeats 1 --warmup 0 --memory-shapes none)
  bash -n "$0" || fail "syntax of $0"
else
  DEVICE=cuda
  LADDER=(--shapes 4x256,1x1024 --layers 8 --repeats 3 --warmup 2 --memory-shapes 4x256)
fi
log "mode: $([ "$DRY_RUN" = 1 ] && echo dry-run on CPU || echo GPU); python $PY; output in $OUT"

# 0. environment: the device must be what the mode says
"$PY" - "$DEVICE" <<'PYEOF' 2>&1 | tee -a "$SUMMARY" || fail "environment check"
import sys
import torch
from quaff_core.quant import capabilities
device = sys.argv[1]
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch; run with --dry-run on a CPU machine")
print(f"torch {torch.__version__}, {capabilities.device_class(device)}: compute_dtype auto -> "
      f"{capabilities.resolve_compute_dtype('auto', device)}, compile auto -> "
      f"{capabilities.resolve_compile('auto', device)}, int8 -> "
      f"{capabilities.kernel_choice(torch.device(device).type)}")
PYEOF
[ "${PIPESTATUS[0]}" = 0 ] || fail "environment check"

# 1. every backend of the device against an exact int8 reference
log "kernels: bench.gpu_kernels --device $DEVICE"
"$PY" -m bench.gpu_kernels --device "$DEVICE" > "$OUT/kernels.md" 2>&1 \
  || { cat "$OUT/kernels.md"; fail "kernel checks (table: $OUT/kernels.md)"; }
tee -a "$SUMMARY" < "$OUT/kernels.md"

# 2. the model ladder
log "ladder: bench.ladder --device $DEVICE ${LADDER[*]}"
"$PY" -m bench.ladder --device "$DEVICE" "${LADDER[@]}" --json "$OUT/ladder.json" \
  --markdown "$OUT/ladder.md" > "$OUT/ladder.log" 2>&1 \
  || { tail -n 30 "$OUT/ladder.log"; fail "ladder (log: $OUT/ladder.log)"; }
tee -a "$SUMMARY" < "$OUT/ladder.md"
log "OK"
