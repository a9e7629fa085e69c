#!/usr/bin/env bash
# Makes results/cifar10_resnet56/ and results/cifar10_resnet20/ with `amc compare`: AMC vs
# uniform vs sensitivity vs random on CIFAR-10 (the JPEG copy in ../shared), before and after
# the same fine-tuning, plus the dense model fine-tuned with that recipe (the fair baseline).
#
# CPU-sized settings (2 cores, no GPU), recorded in each folder's config.json:
#   - `internal` units (the residual blocks' inner channels), BatchNorm statistics re-estimated
#     on 512 training images after pruning, 1,000 val images per search/baseline evaluation;
#   - AMC: DDPG on 2 Ray workers, 300 episodes (100 warm-up) for ResNet-56, 200 (50 warm-up)
#     for each of ResNet-20's three budgets; random: best of 50 policies;
#   - fine-tuning: E = 5 epochs over a fixed random subset of the training split, 5,000 images
#     for ResNet-56 (25,000 images seen, about half of one CIFAR-10 epoch) and 2,000 for each
#     of ResNet-20's 13 models (10,000 seen), SGD lr 0.01 cosine, batch 128.
#
# Resumable: every stage's artifact is cached in the output folder, so rerunning continues
# where a killed run stopped (weights in models/ are git-ignored; once a model's scores are in
# eval/, a rerun on a fresh clone rebuilds the tables without retraining anything).
#
# Usage (from the repository root):
#   bash scripts/bench_compare.sh            # both networks (about 2.5 hours here)
#   bash scripts/bench_compare.sh resnet56   # or resnet20
set -euo pipefail
cd "$(dirname "$0")/.."

AMC=.venv/bin/amc
SHARED=${AMC_SHARED:-../shared}
WHICH=${1:-all}
COMMON=(--data cifar10 --data-dir "$SHARED/data" --units internal --val-limit 1000
        --n-random 50 --workers 2 --threads 2
        --finetune-epochs 5 --lr 0.01 --batch-size 128 --seed 0
        --strategies amc,uniform,sensitivity,random)

if [[ $WHICH == all || $WHICH == resnet56 ]]; then
  $AMC compare --model resnet56 --checkpoint "$SHARED/models/resnet56-cifar10.th" \
      "${COMMON[@]}" --episodes 300 --warmup-episodes 100 --train-limit 5000 --budget flops:0.5 \
      --out results/cifar10_resnet56
fi
if [[ $WHICH == all || $WHICH == resnet20 ]]; then
  $AMC compare --model resnet20 --checkpoint "$SHARED/models/resnet20-cifar10.th" \
      "${COMMON[@]}" --episodes 200 --warmup-episodes 50 --train-limit 2000 \
      --budget flops:0.3 --budget flops:0.5 --budget flops:0.7 \
      --out results/cifar10_resnet20
fi
