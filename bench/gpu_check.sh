#!/usr/bin/env bash
# GPU check of the Quaff engine, under 8 minutes on one GPU:
#   1. the CUDA tests of quaff_core (pytest -m cuda),
#   2. the step benchmark (fp32 LoRA, bf16-autocast LoRA, Quaff defaults; chunked loss for all)
#      on SmolLM2-135M and the 2048-wide 2-layer Llama at 4 x 256,
#   3. a 30-step tiny job through `quaff train --model tiny-llama` with default options,
#   4. with >= 2 GPUs: one job data-parallel on 2 GPUs (torchrun ranks, NCCL) against 1 GPU at the
#      same effective batch (bench/scaling.py); skipped with fewer GPUs (dry run: 2 gloo processes).
# Writes step JSON, the train output and summary.txt to $OUT (default: bench/out/gpu_check).
#
#   bash bench/gpu_check.sh            # on a machine with a CUDA GPU
#   bash bench/gpu_check.sh --dry-run  # CPU self-check of the same steps at tiny sizes (CI)
set -euo pipefail

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$arg' (use --dry-run or nothing)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
QUAFF="$(dirname "$PY")/quaff"
OUT="${OUT:-$ROOT/bench/out/gpu_check}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$OUT/inductor-cache}"

log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$SUMMARY"; }
fail() { log "FAILED: $*"; exit 1; }

[ -x "$PY" ] || fail "no python at $PY (run make install, or set PYTHON)"
if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu
  MODELS=(--model llama128)
  SHAPE=(--batch 1 --seq-len 32 --steps 1 --warmup 0 --threads 2 --no-compile --no-memory)
  TRAIN_STEPS=2
  bash -n "$0" || fail "syntax of $0"
else
  DEVICE=cuda
  MODELS=(--model smollm2 --model llama2048)
  SHAPE=(--batch 4 --seq-len 256 --steps 5 --warmup 2)
  TRAIN_STEPS=30
fi
log "mode: $([ "$DRY_RUN" = 1 ] && echo dry-run on CPU || echo GPU); output in $OUT"

# 0. environment: the device must be what the mode says
"$PY" - "$DEVICE" <<'EOF' | tee -a "$SUMMARY" || fail "environment check"
import sys
import torch
from quaff_core.quant import capabilities as runtime
device = sys.argv[1]
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch; run with --dry-run on a CPU machine")
name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
print(f"torch {torch.__version__} on {name}: compute_dtype auto -> "
      f"{runtime.resolve_compute_dtype('auto', device)}, compile auto -> "
      f"{runtime.resolve_compile('auto', device)}, int8 -> {runtime.int8_backend(device)}")
EOF

# 1. tests
if [ "$DRY_RUN" = 1 ]; then
  TESTS=(tests/quaff_core/quant/test_kernels.py tests/quaff_core/quant/test_capabilities.py -q -k "not cuda")
else
  TESTS=(tests/quaff_core -q -m cuda)
fi
log "tests: pytest ${TESTS[*]}"
"$PY" -m pytest "${TESTS[@]}" -p no:cacheprovider 2>&1 | tail -n 5 | tee -a "$SUMMARY"
[ "${PIPESTATUS[0]}" = 0 ] || fail "tests"

# 2. step benchmark
log "step benchmark: ${MODELS[*]} ${SHAPE[*]}"
"$PY" -m bench.step "${MODELS[@]}" "${SHAPE[@]}" --device "$DEVICE" \
  --modes fp32,bf16-autocast,quaff --json "$OUT/step.json" > "$OUT/step.log" 2>&1 \
  || { tail -n 30 "$OUT/step.log"; fail "step benchmark (log: $OUT/step.log)"; }
grep -A 8 "^== .*median step" "$OUT/step.log" | tee -a "$SUMMARY"

# 3. a tiny training job with default options
log "quaff train --model tiny-llama --max-steps $TRAIN_STEPS"
rm -rf "$OUT/tiny-job"
start=$(date +%s)
"$QUAFF" train --model tiny-llama --data examples/chat.jsonl --output "$OUT/tiny-job" \
  --max-steps "$TRAIN_STEPS" > "$OUT/train.log" 2>&1 \
  || { tail -n 30 "$OUT/train.log"; fail "quaff train (log: $OUT/train.log)"; }
[ -d "$OUT/tiny-job/adapter" ] || fail "quaff train wrote no adapter"
log "tiny job: $TRAIN_STEPS steps in $(( $(date +%s) - start )) s, adapter in $OUT/tiny-job/adapter"

# 4. data-parallel: 2 ranks vs 1 at the same effective batch (skipped with fewer than 2 GPUs)
if [ "$DRY_RUN" = 1 ]; then
  N_GPUS=0
  SCALING=(--model tiny-llama --seq-len 32 --steps 3 --effective-batch 2)
else
  N_GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
  SCALING=(--steps 12 --seq-len 256 --effective-batch 8)
fi
if [ "$DRY_RUN" = 1 ] || [ "$N_GPUS" -ge 2 ]; then
  log "data-parallel: bench.scaling --processes 2 ${SCALING[*]}"
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m bench.scaling --processes 2 \
    "${SCALING[@]}" --json "$OUT/scaling.json" > "$OUT/scaling.log" 2>&1 \
    || { tail -n 30 "$OUT/scaling.log"; fail "data-parallel run (log: $OUT/scaling.log)"; }
  tail -n 3 "$OUT/scaling.log" | tee -a "$SUMMARY"
else
  log "data-parallel: skipped ($N_GPUS GPU(s); it needs 2)"
fi
log "OK"
