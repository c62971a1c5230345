#!/usr/bin/env bash
# GPU check of the trainer's CUDA paths (issue 15), for a session that has a CUDA GPU. Never run on this team's
# CPU machines: it refuses without CUDA. Needs the project installed into a Python with a CUDA build of torch
# (PY, default .venv/bin/python; SHINE, default the `shine` next to it). Writes everything under OUT (default
# artifacts/gpu-check) and prints a summary at the end. About 5-8 minutes on one H100/H200-class GPU:
#
#   1. tests/trainer/test_amp.py (its CUDA cases run only here: fp16 + GradScaler and bf16 steps, numerics vs fp32)
#   2. benchmarks/bench_speed.py --device cuda: fp32 vs bf16 autocast, and fp32 vs fp16 + GradScaler (= auto)
#   3. benchmarks/bench_shine_step.py: SHINE / base step ratio (it adds the CUDA rows itself)
#   4. a 2-epoch synthetic training on CUDA with AMP: QD-DETR + SHINE (oracle negatives) in fp16 + GradScaler,
#      QD-DETR in bf16; each run's manifest must record the precision it used and its metrics.json must exist
#
#   bash scripts/gpu_check.sh [OUT]
set -euo pipefail

OUT=${1:-artifacts/gpu-check}
PY=${PY:-.venv/bin/python}
SHINE=${SHINE:-$(dirname "$PY")/shine}
mkdir -p "$OUT"
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_HOME=${PREFECT_HOME:-$PWD/$OUT/.prefect}

"$PY" - <<'EOF' || { echo "gpu_check: no CUDA device visible to $PY; run this on a GPU machine" >&2; exit 2; }
import sys, torch
sys.exit(0 if torch.cuda.is_available() else 1)
EOF
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0),
'bf16', torch.cuda.is_bf16_supported())" | tee "$OUT/device.txt"
step() { echo "== $(date -u +%H:%M:%S) $*" >&2; }

step "1/4 tests/trainer/test_amp.py (CUDA cases included)"
"$PY" -m pytest tests/trainer/test_amp.py -q -rs 2>&1 | tee "$OUT/test_amp.txt" | tail -5

step "2/4 bench_speed on CUDA: fp32 vs bf16, fp32 vs fp16 + GradScaler"
"$PY" benchmarks/bench_speed.py --config official --device cuda --amp bf16 --json "$OUT/bench_speed_cuda_bf16.json" >/dev/null
"$PY" benchmarks/bench_speed.py --config official --device cuda --amp fp16 --json "$OUT/bench_speed_cuda_fp16.json" >/dev/null

step "3/4 SHINE / base step ratio (bench_shine_step, CPU and CUDA rows)"
"$PY" benchmarks/bench_shine_step.py --steps 10 --warmup 3 > "$OUT/bench_shine_step.json"

step "4/4 2-epoch synthetic training on CUDA with AMP"
"$SHINE" make-synthetic --out "$OUT/synthetic" --size small --overwrite >/dev/null
common=(--preset synthetic --set "data.root=$OUT/synthetic" --set optim.epochs=2 --set optim.device=cuda
        --set progress=false --set plot_queries=0)
"$SHINE" train "${common[@]}" --out "$OUT/train-shine-fp16" --set optim.amp=fp16 \
    --set shine.enabled=true --set shine.oracle_negatives=true > "$OUT/train-shine-fp16.log" 2>&1
"$SHINE" train "${common[@]}" --out "$OUT/train-qd-bf16" --set optim.amp=bf16 > "$OUT/train-qd-bf16.log" 2>&1

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {"device": (out / "device.txt").read_text().strip()}
for name in ("bf16", "fp16"):
    r = json.loads((out / f"bench_speed_cuda_{name}.json").read_text())
    summary[f"bench_{name}"] = {"fp32": r["fp32"], "fast": r["fast"], "speedup": r["speedup_fast_over_fp32"],
                                "shine_over_qd_detr": r.get("shine_over_qd_detr"), "fast_path": r["fast_path"]}
summary["bench_shine_step_cuda"] = json.loads((out / "bench_shine_step.json").read_text()).get("cuda")
for run, want in (("train-shine-fp16", "fp16"), ("train-qd-bf16", "bf16")):
    manifest = json.loads((out / run / "manifest.json").read_text())
    metrics = json.loads((out / run / "metrics.json").read_text())
    assert manifest.get("amp") == want, f"{run}: manifest amp {manifest.get('amp')!r}, expected {want!r}"
    summary[run] = {"amp": manifest["amp"], "metrics": metrics}
text = json.dumps(summary, indent=1, default=str)
(out / "summary.json").write_text(text + "\n")
print(text)
EOF
step "done: $OUT/summary.json"
