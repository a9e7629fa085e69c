#!/usr/bin/env bash
# The CUDA paths end to end, on a machine with a GPU; writes results/gpu_check.json.
#
#   bash scripts/gpu_check.sh                      # needs CUDA (one line and exit 2 without)
#   DEVICE=cpu AMP=bf16 TRAIN=200 SIZE=64 COMPILE=0 OUT=runs/gpu_check_cpu.json \
#     bash scripts/gpu_check.sh                    # a dry run of the script on the CPU
#
# Steps (each timed; a failed step is recorded and the next ones still run):
#   dense       train the digits CNN from scratch (--device, --amp, --channels-last)
#   eval        amc eval on the device
#   search      a short AMC search (--device: pruned networks scored on the GPU, in the
#               mixed precision of --score-amp $AMP: bf16 autocast on a recent GPU)
#   iterative   the winning policy feeds iterative fine-tuning (AMP, channels-last, distilled
#               from the dense model: the default, the teacher a folded copy in bf16)
#   compare     amc compare on the digits CNN (amc, global, uniform) with --device, --amp,
#               --channels-last and distillation (--kd-weight 0.5): delivered networks scored
#               where the scorer put them, the teacher a folded copy on the device (the
#               dense model itself stays on the CPU for pruning and CPU latency)
#   stream      tv:resnet18 pruned to flops:0.5 and fine-tuned on a streamed folder of
#               mixed-size JPEGs at 224 px (loader workers, pinned memory, AMP, distilled)
#   compile     the same fine-tune with --compile (torch.compile)
#   search56    where SHARED holds the pretrained CIFAR ResNet-56 and CIFAR-10: a ResNet-56
#               search at flops:0.5 (internal units, 1,000 val images, cheap warm start,
#               --device, --score-amp $AMP) for SEARCH56_EPISODES episodes or
#               SEARCH56_SECONDS seconds: seconds per episode on the device (else skipped);
#               the agent's updates run while the GPU scores (the default)
#   search56_serial  the same with --no-overlap-updates (updates between the episodes): what
#               the overlap saves per episode
#   ddp         amc finetune --workers 2 --gpus-per-worker 1 (Ray Train, nccl): only with 2+
#               GPUs, else recorded as skipped
# Environment: DEVICE (cuda), AMP (auto: bf16 where supported, else fp16 with a scaler),
# TRAIN (2000 training JPEGs in the folder), SIZE (224), COMPILE (1: run the compile step),
# SHARED (../shared), SEARCH56_EPISODES (300), SEARCH56_SECONDS (100),
# PY (.venv/bin/python), WORK (runs/gpu_check), OUT (results/gpu_check.json).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
AMP=${AMP:-auto}
TRAIN=${TRAIN:-2000}
SIZE=${SIZE:-224}
COMPILE=${COMPILE:-1}
WORK=${WORK:-runs/gpu_check}
OUT=${OUT:-results/gpu_check.json}
SHARED=${SHARED:-../shared}
SEARCH56_EPISODES=${SEARCH56_EPISODES:-300}
SEARCH56_SECONDS=${SEARCH56_SECONDS:-100}
AMC=("$PY" -m amc.cli)
export AMC_QUIET=1 AMC_CACHE_DIR=${AMC_CACHE_DIR:-$WORK/cache}

"$PY" -c "from amc.utils.device import resolve_device; resolve_device('$DEVICE')" 2>/dev/null \
  || { echo "gpu_check: error: --device $DEVICE is not available here; run it on a machine" \
            "with CUDA (or DEVICE=cpu for a dry run)" >&2; exit 2; }
mkdir -p "$WORK"
STEPS="$WORK/steps.tsv"
: > "$STEPS"

step() {  # step NAME COMMAND...: run, time, record "name rc seconds log"
  local name=$1; shift
  local log="$WORK/$name.log" t0 rc
  t0=$(date +%s%N)
  "$@" > "$log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(awk "BEGIN {print ($(date +%s%N) - $t0) / 1e9}")" \
    "$log" >> "$STEPS"
  echo "$name: rc $rc ($(tail -n 1 "$log" | cut -c1-120))"
}

DEV=(--device "$DEVICE" --amp "$AMP" --channels-last --force)
step dense "${AMC[@]}" finetune --model digits_cnn --epochs 5 --lr 0.05 --batch-size 64 \
  "${DEV[@]}" --out "$WORK/dense"
step eval "${AMC[@]}" eval --checkpoint "$WORK/dense/model.pt" --device "$DEVICE"
step search "${AMC[@]}" search --checkpoint "$WORK/dense/model.pt" --episodes 30 \
  --warmup-episodes 10 --device "$DEVICE" --score-amp "$AMP" --force --out "$WORK/search"
step iterative "${AMC[@]}" finetune --checkpoint "$WORK/dense/model.pt" \
  --policy "$WORK/search/best_policy.json" --schedule iterative --rounds 2 --epochs 4 \
  --lr 0.02 "${DEV[@]}" --out "$WORK/iterative"
rm -rf "$WORK/compare"  # a comparison caches its stages: this one runs them
step compare "${AMC[@]}" compare --checkpoint "$WORK/dense/model.pt" \
  --strategies amc,global,uniform --episodes 20 --warmup-episodes 5 --finetune-epochs 1 \
  --kd-weight 0.5 --latency-runs 3 --device "$DEVICE" --amp "$AMP" --channels-last \
  --out "$WORK/compare"
step folder "$PY" scripts/make_synthetic_imagefolder.py --out "$WORK/folder" \
  --train "$TRAIN" --test $((TRAIN / 10))
STREAM=(--model tv:resnet18 --num-classes 10 --data "imagefolder:$WORK/folder"
        --input-size 3 "$SIZE" "$SIZE" --target flops:0.5 --epochs 1 --batch-size 64
        --lr 0.05 --val-size $((TRAIN / 10)))
step stream "${AMC[@]}" finetune "${STREAM[@]}" "${DEV[@]}" --out "$WORK/stream"
if [ "$COMPILE" = 1 ]; then
  step compile "${AMC[@]}" finetune "${STREAM[@]}" "${DEV[@]}" --compile --out "$WORK/compile"
else
  printf 'compile\tskipped\t0\tCOMPILE=0\n' >> "$STEPS"
fi
if [ -f "$SHARED/models/resnet56-cifar10.th" ] && [ -d "$SHARED/data" ]; then
  S56=(search --model resnet56 --checkpoint "$SHARED/models/resnet56-cifar10.th"
    --data cifar10 --data-dir "$SHARED/data" --units internal --val-limit 1000 --budget flops:0.5
    --episodes "$SEARCH56_EPISODES" --warmup-episodes 20 --warm-start cheap
    --time-limit "$SEARCH56_SECONDS" --device "$DEVICE" --score-amp "$AMP" --force)
  step search56 "${AMC[@]}" "${S56[@]}" --out "$WORK/search56"
  step search56_serial "${AMC[@]}" "${S56[@]}" --no-overlap-updates --out "$WORK/search56_serial"
else
  for s in search56 search56_serial; do
    printf '%s\tskipped\t0\tno %s/models/resnet56-cifar10.th\n' "$s" "$SHARED" >> "$STEPS"
  done
fi
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ] && [ "$DEVICE" != cpu ]; then
  step ddp "${AMC[@]}" finetune "${STREAM[@]}" "${DEV[@]}" --workers 2 --gpus-per-worker 1 \
    --out "$WORK/ddp"
else
  printf 'ddp\tskipped\t0\t%s GPU(s)\n' "$NGPU" >> "$STEPS"
fi

"$PY" - "$STEPS" "$WORK" "$OUT" "$DEVICE" "$AMP" <<'EOF'
import csv
import json
import sys
from pathlib import Path

import torch

from amc.utils.precision import precision
from amc.utils.device import resolve_device
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions

steps_file, work, out, device, amp = sys.argv[1:]
dev = resolve_device(device)
res = {"date": now(), "git_commit": git_commit(), "versions": versions(), "device": device,
       "amp": amp, "amp_dtype": precision(amp, dev).name,
       "cuda": {"available": torch.cuda.is_available(),
                "devices": [torch.cuda.get_device_name(i)
                            for i in range(torch.cuda.device_count())],
                "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
                "torch_cuda": torch.version.cuda},
       "steps": {}}
for line in Path(steps_file).read_text().splitlines():
    name, rc, secs, log = line.split("\t")
    entry = {"rc": int(rc) if rc.lstrip("-").isdigit() else rc, "seconds": float(secs)}
    if rc == "skipped":
        entry["reason"] = log
    else:
        entry["last_line"] = Path(log).read_text().strip().splitlines()[-1:] or [""]
        summary = Path(work) / name / "summary.json"
        if summary.is_file():
            s = json.loads(summary.read_text())
            if "final" in s:  # a fine-tune
                entry.update(final=s["final"], speed=s["speed"],
                             epochs_trained=s["epochs_trained"])
            else:  # a search, and where its episodes' seconds went (scoring vs the rest)
                entry.update({k: s[k] for k in ("episodes", "best_val_top1", "uniform_val_top1",
                                                "seconds_per_episode", "cheap_seconds",
                                                "wall_seconds_this_run",
                                                "update_rounds_overlapped") if k in s})
                with open(Path(work) / name / "episodes.csv") as f:
                    rows = list(csv.DictReader(f))
                entry["mean_episode_split_s"] = {
                    k: sum(float(r[k]) for r in rows) / len(rows)
                    for k in ("prune_s", "repair_s", "eval_s", "seconds") if rows}
    res["steps"][name] = entry
res["ok"] = all(e["rc"] in (0, "skipped") for e in res["steps"].values())
write_json(out, res)
rcs = ", ".join(f"{k} {v['rc']}" for k, v in res["steps"].items())
print(f"{out}: {'ok' if res['ok'] else 'FAILED'} ({rcs})")
sys.exit(0 if res["ok"] else 1)
EOF
