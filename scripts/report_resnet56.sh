#!/usr/bin/env bash
# Makes results/report_resnet56_uniform50/: the pretrained CIFAR-10 ResNet-56 (../shared) vs
# the same network pruned uniformly to 50 % of its FLOPs in `internal` mode (inner channels of
# the residual blocks), BatchNorm statistics re-estimated on 2,000 training images, no
# fine-tuning; plus an INT8 copy of the pruned model (onnxruntime static quantization,
# calibrated on 512 CIFAR-10 training images).
#
# Weights and ONNX files go to runs/r56/ (git-ignored); the report folder holds md/json/png
# only. The last step exits with 1 when the verdict fails (expected here: without
# fine-tuning the pruned model loses far more than 1 point of top-1).
#
# Usage (from the repository root): bash scripts/report_resnet56.sh
#   FORCE=1 bash scripts/report_resnet56.sh   # overwrite earlier outputs
# About 15-25 minutes on the 2-core reference machine when other jobs share it.
set -euo pipefail
cd "$(dirname "$0")/.."

AMC=.venv/bin/amc
SHARED=../shared
CKPT=$SHARED/models/resnet56-cifar10.th
DATA=(--data cifar10 --data-dir "$SHARED/data")
RUN=runs/r56
F=${FORCE:+--force}

mkdir -p "$RUN"
# 1. the uniform 50 % FLOPs policy over the residual blocks' inner channels
$AMC baseline --model resnet56 --checkpoint "$CKPT" "${DATA[@]}" --units internal \
    --strategy uniform --budget flops:0.5 --threads 2 --out "$RUN/uniform50.json" $F
# 2. prune to it, re-estimate BatchNorm statistics on 2,000 training images
$AMC apply --model resnet56 --checkpoint "$CKPT" "${DATA[@]}" --policy "$RUN/uniform50.json" \
    --bn-recalib --calib-size 2000 --threads 2 --out "$RUN/uniform50_bnrecal.pt" $F
# 3. verified fp32 ONNX of the pruned model and its INT8 copy (uniform50_bnrecal.int8.onnx)
$AMC export --model resnet56 --checkpoint "$RUN/uniform50_bnrecal.pt" "${DATA[@]}" \
    --format onnx --int8 --threads 2 --out "$RUN/uniform50_bnrecal.onnx" $F
# 4. the report (dense/pruned ONNX exports for the onnxruntime timings go to runs/ too)
$AMC report --model resnet56 --dense "$CKPT" --pruned "$RUN/uniform50_bnrecal.pt" \
    --int8 "$RUN/uniform50_bnrecal.int8.onnx" "${DATA[@]}" --threads 2 \
    --onnx-dir "$RUN/report_onnx" --out results/report_resnet56_uniform50 $F
