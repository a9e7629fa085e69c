#!/usr/bin/env bash
# Search quality (issue #15): AMC vs the cheap allocations on CIFAR-10 ResNet-56, over seeds,
# before and after the same fine-tuning, with latency measured side by side.
#
#   bash scripts/bench_compare.sh            # -> results/compare_resnet56/ (about 2 h here)
#   bash scripts/bench_compare.sh resnet20   # the ResNet-20 comparison of earlier sessions
#   bash scripts/bench_compare.sh sweep      # -> results/compare_resnet56_sweep/ (~25 min)
#   bash scripts/bench_compare.sh retime-sweep  # -> results/compare_resnet56/sensitivity_retimed.json
#   bash scripts/bench_compare.sh bf16       # -> results/compare_resnet56_bf16/ (~50 min)
#   bash scripts/bench_compare.sh pooled     # -> results/compare_resnet56_pooled/ (~40 min)
#   bash scripts/bench_compare.sh bf16-retime  # bf16's searches again, timed (~30 min)
#   bash scripts/bench_compare.sh amx        # -> results/compare_resnet56_amx/ (flops:0.3)
#   bash scripts/bench_compare.sh amx-cap    # -> results/compare_resnet56_amx_cap90/
#   bash scripts/bench_compare.sh amx-recon  # -> results/compare_resnet56_amx_recon/
#   bash scripts/bench_compare.sh amx-recon-reward  # -> results/compare_resnet56_amx_recon_reward/
#   bash scripts/bench_compare.sh amx-recon-fast  # -> results/compare_resnet56_amx_recon_fast/ (~10 min)
#   bash scripts/bench_compare.sh amx-recon-reward-full  # -> results/compare_resnet56_amx_recon_reward_full/
#   bash scripts/bench_compare.sh amx-fused  # -> results/compare_resnet56_amx_fused/
#   bash scripts/bench_compare.sh native     # -> results/compare_resnet56_native/ (~50 min)
#   bash scripts/bench_compare.sh native-vectors  # -> results/compare_resnet56_native_vectors/
#   bash scripts/bench_compare.sh native-all  # -> results/compare_resnet56_native_all/ (~30 min)
#   bash scripts/bench_compare.sh native-kd  # -> results/compare_resnet56_native_kd/ (~50 min)
#   bash scripts/bench_compare.sh native-kd-plain  # -> results/compare_resnet56_native_kd_plain/ (~20 min)
#   bash scripts/bench_compare.sh drop       # -> results/compare_resnet56_drop/ (~75 min)
#   bash scripts/bench_compare.sh drop55     # -> results/compare_resnet56_drop55/ (~65 min)
#   bash scripts/bench_compare.sh drop55-ft  # -> results/compare_resnet56_drop55/finetune_15k.* (~15 min)
#   bash scripts/bench_compare.sh drop55-swap  # -> results/compare_resnet56_drop55_swap/ (~35 min)
#   bash scripts/bench_compare.sh drop55-swap-ft  # -> results/compare_resnet56_drop55_swap/finetune_15k.* (~12 min)
#   bash scripts/bench_compare.sh drop55-kd  # -> results/compare_resnet56_drop55_swap/finetune_kd.* (~25 min)
#   bash scripts/bench_compare.sh drop55-kd-time  # -> .../drop55_kd_time.* (~35 min)
#   bash scripts/bench_compare.sh drop55-kd-teacher  # -> .../drop55_kd_teacher.* (~12 min)
#   bash scripts/bench_compare.sh flops03-kd-time  # -> .../flops03_kd_time.* (~8 min)
#   bash scripts/bench_compare.sh drop55-kd-compare  # -> results/compare_resnet56_drop55_kd/ (~20 min)
#   bash scripts/bench_compare.sh drop55-kd-plain  # -> results/compare_resnet56_drop55_kd_plain/ (~20 min)
#   bash scripts/bench_compare.sh drop55-pairs  # -> results/compare_resnet56_drop55_pairs/ (~25 min)
#   bash scripts/bench_compare.sh drop55-finalists  # -> results/compare_resnet56_drop55_finalists/
#   bash scripts/bench_compare.sh drop55-finalists-blocks  # -> .../compare_resnet56_drop55_finalists_blocks/
#   bash scripts/bench_compare.sh drop55-vectors  # -> .../compare_resnet56_drop55_vectors/ (~40 min)
#   bash scripts/bench_compare.sh drop55-fill     # -> .../compare_resnet56_drop55_fill/ (~50 min)
#   bash scripts/bench_compare.sh drop55-grid     # -> .../compare_resnet56_drop55_grid/ (~40 min)
#   bash scripts/bench_compare.sh drop55-grid-ft  # -> .../compare_resnet56_drop55_grid/finetune_45k.* (~70 min)
#   bash scripts/bench_compare.sh drop54-grid     # -> .../compare_resnet56_drop54_grid/ (~40 min)
#   bash scripts/bench_compare.sh drop54-grid-ft  # -> .../compare_resnet56_drop54_grid/finetune_45k.* (~35 min)
#   bash scripts/bench_compare.sh drop54-plain    # -> .../compare_resnet56_drop54_plain/ (~40 min)
#   bash scripts/bench_compare.sh drop54-plain-ft # -> .../compare_resnet56_drop54_plain/finetune_45k.* (~35 min)
#   bash scripts/bench_compare.sh drop54-margin   # -> .../compare_resnet56_drop54_margin/ (~20 min)
#   bash scripts/bench_compare.sh drop54-margin-ft # -> .../compare_resnet56_drop54_margin/finetune_45k.* (~20 min)
#   bash scripts/bench_compare.sh drop54-all      # -> .../compare_resnet56_drop54_all/ (~35 min)
#   bash scripts/bench_compare.sh drop53          # -> .../compare_resnet56_drop53/ (~40 min)
#   bash scripts/bench_compare.sh drop53-ft       # -> .../compare_resnet56_drop53/finetune_45k.* (~20 min)
#   bash scripts/bench_compare.sh drop53-timed    # -> .../compare_resnet56_drop53_timed/ (~60 min)
#   bash scripts/bench_compare.sh drop53-timed-ft # -> .../compare_resnet56_drop53_timed/finetune_45k.* (~20 min)
#   FRESH=DIR bash scripts/bench_compare.sh fresh53     # -> DIR/ (~90 min, nothing copied)
#   FRESH=DIR bash scripts/bench_compare.sh fresh53-ft  # -> DIR/finetune_45k.* (~40 min)
#   FRESH=DIR bash scripts/bench_compare.sh fresh53-lean  # -> DIR_lean/ (~15 min)
#   FRESH=DIR bash scripts/bench_compare.sh fresh50-lean  # -> DIR_lean50/ (~25 min)
#   FRESH=DIR bash scripts/bench_compare.sh fresh52-lean  # -> DIR_lean52/ (~25 min)
#   FRESH=DIR_lean SEEDS=5 bash scripts/bench_compare.sh capacity53  # (~60 min)
#   bash scripts/bench_compare.sh scratch56  # -> runs/scratch56/, results/val_gap_scratch56.* (~75 min)
#   bash scripts/bench_compare.sh scratch53  # -> results/compare_resnet56_scratch53/ (~50 min)
#   FRESH=DIR SEEDS=5 bash scripts/bench_compare.sh ft-recipe  # -> DIR/finetune_5k_*.* (~40 min)
#
# `retime-sweep`: the comparison's sensitivity sweep run again (same adapted model, images and
# command, in a scratch folder), to time it on the same machine right after AMC's searches
# (timings drift between sessions); quality_summary.py checks the searches against it too.
#
# `sweep`: AMC refining the sensitivity allocation (--sweep-warm-start: the warm-up also
# replays the allocation of the comparison's sweep; AMC's seconds include the sweep's), one
# run, flops:0.5 and flops:0.3, before fine-tuning only, on the same adapted dense model
# (its sweep, 20 min, is reused from results/compare_resnet56/sensitivity.json when that
# exists: the same dense model and val images).
#
# ResNet-56 settings (recorded in the folder's config.json), sized for 2 CPU cores:
#   - budgets flops:0.5, flops:0.3 and latency:0.65 (PyTorch CPU, batch 64, 2 threads: the
#     latency table's defaults; latency:0.5 is refused as unreachable: pruning every internal
#     unit by 0.9 measures 0.552 of the dense latency, the table predicting 0.576:
#     results/latency_table.json); `internal` units (what
#     --units auto picks for ResNets; option-A CIFAR ResNets cannot prune across the adds);
#   - no distillation in the fine-tunes (--kd-weight 0): every committed folder was made
#     before distillation became the default (the drop55-kd* modes measure it);
#   - every fine-tune starts from the network scored before fine-tuning (--finetune-from
#     delivered: reconstructed with --reconstruct): every committed folder was made before the
#     default became the plainly pruned network (the *-kd-plain modes measure it);
#   - --search-on adapted: the public checkpoint is first fine-tuned on our data (the JPEG
#     copy it was not trained on), and every strategy prunes that model;
#   - 3 runs per strategy (--seeds 3): AMC with seeds 0/1/2, every baseline with calibration
#     draws 0/1/2 (BN statistics re-estimated on 256 of 512 train images; random draws its
#     own 30 policies per run); the table shows mean ± std; every run is fine-tuned
#     (--finetune-runs 3: 45 fine-tunes of ~35 s each here, fine-tuning seed 0/1/2), so
#     after-fine-tuning figures are means over 3 runs too (the first committed runs
#     fine-tuned only run 0: --finetune-runs 1; raising it reuses everything else);
#   - AMC: 300 episodes (sized, before the noise floor, to stay within the sensitivity
#     sweep's wall time; with it the searches take 364-480 s vs the sweep's 409-421 s), the first
#     20 replaying the cheap policies (--warm-start cheap), exploration sigma floored at
#     0.05 (--noise-min: without it the decayed noise stalls the search after ~90
#     episodes), on 2 Ray workers, val = 1,000 images, racing on (amc search's default);
#     the best policy picked among each search's 5 best on all 5,000 val images
#     (--rescore-top 5, amc search's default; its seconds count in the search's);
#     random: best of 30, picked like AMC's (among its 5 best on all 5,000 val images:
#     --rescore-top 5, amc compare's default); sensitivity: one sweep (27 units x 9 ratios)
#     on the 2 workers;
#   - fine-tuning (dense and every pruned model): 1 epoch over a fixed 5,000-image train
#     subset, SGD lr 0.01 cosine, batch 128.
#
# Scores (BN recalibration and val top-1 of each policy) in fp32 (--score-amp off): these
# folders predate --score-amp, whose default (auto) scores in bf16 on a CPU with native bf16.
#
# `bf16`: the flops:0.5 comparison again with the scores in bf16 (--score-amp bf16: what auto
# picks on this CPU), all else as above (its own adapted model, sweep, searches, fine-tunes)
# -> results/compare_resnet56_bf16/ (~50 min).
#
# `pooled`: AMC's flops:0.5 searches of `bf16` again with the envs on the driver (one remote
# call per episode instead of one per unit), 2 envs per worker (--envs-per-worker 2: a worker
# that finishes a raced episode early takes the next) and the rescoring on the workers; the
# baselines are the bf16 folder's (copied: the same adapted model, calibration draws, scores
# and fine-tunes), and the sweep is re-timed right after the searches (sensitivity_retimed.json)
# -> results/compare_resnet56_pooled/ (~40 min).
#
# `bf16-retime`: the bf16 folder's AMC searches made again with the current code (envs on
# the driver, rescoring on the workers: the same episodes for a seed, so only their seconds
# change; the earlier searches are moved to runs/bf16_before/ and the picks checked equal, so
# the cached evaluations and fine-tunes stay valid), then its sweep re-timed right after
# them (sensitivity_retimed.json).
#
# `amx`: the flops:0.3 comparison with the scores as `amc compare` makes them by default
# (--score-amp auto: bf16 on a CPU with native bf16; on an Intel Xeon with AMX, bf16
# convolutions run ~2.7x faster than fp32), all else as above -> results/compare_resnet56_amx/.
# `amx-cap`: the same with --max-ratio 0.9 for every strategy (the sweep already measures
# 0.9; at 30 % of the FLOPs a 0.8 cap leaves every unit between 0.2 and ~0.5 of its channels),
# at flops:0.3 and flops:0.5, on amx's adapted model and sweep (copied, with its two
# timings) -> results/compare_resnet56_amx_cap90/.
# `amx-recon`: amx-cap's flops:0.3 comparison with --reconstruct (least-squares refit of the
# pruned convs before the BN recalibration, in every score and every delivered network: the
# reward that ranked 20 policies closer to their after-fine-tuning order in
# results/reward_proxy.json), on amx's adapted model (copied; its own sweep)
# -> results/compare_resnet56_amx_recon/.
# `amx-recon-reward`: amx-recon's settings with --no-reconstruct-delivered (reconstruction only
# ranks the policies; each delivered network is plainly pruned and BN-recalibrated), at
# flops:0.3, flops:0.5 and latency:0.65 -> results/compare_resnet56_amx_recon_reward/. Its
# flops:0.3 policies are amx-recon's (the same searches, sweep and random draws: copied with
# their timings, ~15 min of evaluations and fine-tunes); the other two budgets are searched
# here (~70 min), and latency.json is then re-timed for every model side by side.
# `amx-recon-fast`: amx-recon-reward's setting at flops:0.3 with the reconstruction as it is now
# (sampled patches only, forward in the score's precision: results/bench_reconstruct.json),
# one run (AMC seed 0, sensitivity, uniform), before fine-tuning only, on amx's adapted model
# (copied): the search and the sweep timed again, one after the other
# -> results/compare_resnet56_amx_recon_fast/.
# `amx-recon-reward-full`: amx-recon-reward's setting made whole with the code of the thirteenth
# session (reconstruction as in amx-recon-fast; latency table timed down to 1/16 of a layer's
# channels with the allocator settled: results/latency_table.json): every budget searched, the
# sweep, random's draws and the latencies timed in the one run, on amx's adapted model (copied)
# -> results/compare_resnet56_amx_recon_reward_full/ (~90 min).
#
# `amx-fused`: the fourteenth session's reconstruction, fitted in the BatchNorm recalibration's
# own forward pass (each refit sees the recalibrated network's inputs: +8.0 test points on 20
# flops:0.3 policies, 0.33 instead of 0.57 s of repair, results/bench_reconstruct.json), at
# flops:0.5, flops:0.3 and latency:0.65 (flops:0.5 first, the others added to the folder
# after), with the reconstructed networks delivered (`--reconstruct`'s default) and the 0.9
# cap; amx's adapted model copied -> results/compare_resnet56_amx_fused/ (~30 min a budget).
#
# `native`: amx-fused's settings with the fifteenth session's defaults (reconstruction on, in
# every score and delivered network) and `--sweep-time-limit`: each AMC search, its rescoring
# included, gets the sweep's seconds measured in this same run (`amc search --time-limit`);
# everything made in the one run (the adapted dense model too, no weights being on a new
# machine) -> results/compare_resnet56_native/ (~50 min).
#
# `native-vectors`: native's latency:0.65 comparison again with the sixteenth session's latency
# table (conv outputs counted in whole vectors, `METHOD` 6; native's searches saw the linear
# table of `METHOD` 5), on native's adapted dense model (copied: the same dense network, val
# images and seeds), its own sweep for --sweep-time-limit
# -> results/compare_resnet56_native_vectors/ (~35 min).
#
# `native-all`: native's flops:0.5 comparison with units `all` (UNITS=all): the residual
# stream of each stage is a unit too (the option-A shortcuts pruned as 1x1 selection convs,
# the same function), 30 units instead of 27, every strategy on them; its own adapted dense
# model and sweep -> results/compare_resnet56_native_all/ (~30 min).
#
# `native-kd`: the README headline's comparison with today's default fine-tune (distillation
# from the adapted dense model, --kd-weight 0.5): native's flops:0.5 / flops:0.3 policies and
# native-vectors' latency:0.65 ones (made with today's latency table, METHOD 6; native's own
# predate it), their searches' records and native's sweep copied; the adapted dense model (no
# teacher; today's code makes drop55-swap's, test 86.77 %, native's was 86.74 %), every score
# before fine-tuning, the latencies and the 45 distilled fine-tunes made again
# -> results/compare_resnet56_native_kd/ (~50 min).
#
# `native-kd-plain`: native-kd's flops:0.3 runs with the networks delivered plainly pruned and
# BN-recalibrated (--no-reconstruct-delivered: reconstruction in the scores only) before the
# same distilled fine-tunes -> results/compare_resnet56_native_kd_plain/ (~20 min).
#
# `drop55-kd-plain`: drop55-kd-compare's networks delivered so (its policies, searches' records
# and latencies copied) -> results/compare_resnet56_drop55_kd_plain/ (~20 min).
#
# `drop55-pairs`: drop55-kd-plain's latency:0.55 comparison with AMC's searches made again with
# --pair-moves 0.5 (half the episodes after the warm-up that swap no block replay the best
# policy so far with two kept units of the same cost trading pruning) and --anchor-every 1
# (the actor fitted again to the best policy after every episode: ten episodes of DDPG updates
# had moved it 0.21 per unit on average away from it); blocks and uniform (policies,
# scores, fine-tunes) and the adapted dense model copied; its uniform flops:0.5 is
# drop55-kd-plain's -> results/compare_resnet56_drop55_pairs/ (~25 min).
#
# `drop55-finalists`: drop55-pairs with --finalists 4: each finished search picks again (its
# episodes kept): its pick and 3 other policies (one per other set of dropped blocks first; the
# blocks strategy's candidates for each number of dropped blocks join the episodes), each
# fine-tuned as the comparison does (1 epoch over 5,000 images, distilled), the best on all
# of val after it kept; blocks, uniform and the adapted dense model copied; its uniform
# flops:0.5 is drop55-kd-plain's -> results/compare_resnet56_drop55_finalists/ (~25 min).
#
# `drop55-finalists-blocks`: drop55-pairs with AMC searched again, each search warm-started
# from the blocks candidate best on val after the short fine-tune among the 3 best by score
# (--blocks-finalists 3) and ending with --finalists 4 -> results/compare_resnet56_drop55_
# finalists_blocks/ (~35 min).
#
# `drop55-vectors`: drop55-finalists-blocks' comparison made again from its adapted dense model
# (amc, blocks and uniform at latency:0.55) with the latency table that counts a conv's kept
# inputs past one vector in whole vectors (METHOD 7) -> results/compare_resnet56_drop55_vectors/
# (~40 min). `VECTORS_MORE=1 bash scripts/bench_compare.sh drop55-vectors` adds latency:0.57 to
# the same folder (~40 min more): the budget whose networks measure about what METHOD 6's
# latency:0.55 ones did.
#
# `drop55-fill`: drop55-vectors' settings with every unit's kept channels past one CPU vector
# filled to whole vectors at the latency budget where it still holds (--fill-vectors, the
# default since the thirty-fourth session: the table charges those whole vectors already), on a
# dense model adapted afresh on this machine: uniform at flops:0.5 (#15's accuracy reference
# for its latency item; its table and timings kept as *_uniform_flops0.5.*, since a call's
# table and latency.json hold its own jobs only), then amc, blocks and uniform at latency:0.55
# in the same folder -> results/compare_resnet56_drop55_fill/ (~50 min). `NOFILL=1` makes the same comparison
# with --no-fill-vectors from that folder's adapted model -> .../compare_resnet56_drop55_nofill/.
#
# `drop55-grid`: drop55-fill's comparison at latency:0.55 (amc, blocks, uniform) made again
# with the latency table of METHOD 8 (a conv of at most 8 vectors timed at every whole vector:
# on AVX2 33-40 of 64 outputs cost 0.85-0.88 of the conv, which METHOD 7 interpolated to 0.71),
# from drop55-fill's adapted dense model; its uniform flops:0.5 runs (policies, scores,
# fine-tunes, tables and timings) copied -> results/compare_resnet56_drop55_grid/ (~40 min);
# `SEEDS=5 bash scripts/bench_compare.sh drop55-grid` then adds AMC seeds 3-4 and two more
# draws of the baselines (~40 min).
#
# `drop`: native's settings with --drop-blocks (a unit that is a block's inner width may drop
# its block whole: amc.prune.depth), at latency:0.5 (refused without it) and flops:0.5;
# strategies amc, blocks (the k least-sensitive blocks dropped, then uniform; k chosen on val)
# and uniform (left out at a budget it cannot reach); 3 runs each (AMC seeds 0/1/2,
# calibration draws 0/1/2), all fine-tuned, each AMC search limited to 300 s (--time-limit; no
# sweep is run) -> results/compare_resnet56_drop/ (~75 min; the first committed table had 2
# runs, --seeds 2 --finetune-runs 2, the third added by rerunning in the same folder; there
# each search made its own blocks policy again, outside its 300 s).
#
# `drop55`: drop's settings at latency:0.55 (the ~1.8x point: latency:0.5 measured ~2x) and
# flops:0.5, with the comparison's blocks policy handed to each AMC search (its seconds count
# in AMC's 300 s and search time) -> results/compare_resnet56_drop55/ (~65 min).
#
# `drop55-ft`: a longer fine-tune of drop55's networks at ~1.8x (amc and blocks at
# latency:0.55) and of uniform flops:0.5, each run's policy applied to the folder's adapted
# dense model by `amc finetune` (one-shot: no reconstruction or BN recalibration first) and
# fine-tuned 1 epoch over 15,000 training images (3x the comparison's), seed = run; weights in
# runs/drop55_ft/ -> results/compare_resnet56_drop55/finetune_15k.json/.md (~15 min).
#
# `drop55-swap`: drop55's AMC searches at latency:0.55 again with --drop-swap 0.3 (a share of
# the episodes swaps a dropped and a kept block); blocks and uniform are drop55's own (their
# policies, scores and fine-tunes copied: the same calibration draws and recipe), the adapted
# dense model is made again (bit for bit) -> results/compare_resnet56_drop55_swap/ (~35 min).
#
# `drop55-kd`: the comparison's fine-tune (1 epoch, 5,000 images; `amc finetune` one-shot
# from the policy) with and without distillation from the adapted dense model (--kd-weight
# 0.5), for drop55-swap's AMC networks at latency:0.55 and drop55's uniform flops:0.5, seed =
# run; weights in runs/drop55_kd/ -> results/compare_resnet56_drop55_swap/finetune_kd.* (run
# drop55-swap first: its adapted dense model is git-ignored).
#
# `drop55-kd-compare`: the ~1.8x comparison again with today's default fine-tune (distillation
# from the adapted dense model, --kd-weight 0.5) inside `amc compare` (each network reconstructed
# and BN-recalibrated first, as delivered): drop55-swap's latency:0.55 policies (amc, blocks,
# uniform) and drop55's flops:0.5 ones (amc and blocks searched there, without --drop-swap)
# with their searches' records; the adapted dense model, the scores, the latencies (all 18
# networks side by side) and the 18 fine-tunes made again -> results/compare_resnet56_drop55_kd/.
#
# Resumable: every stage's artifact is cached in the output folder (weights in models/ are
# git-ignored; once a model's scores are in eval/, a rerun rebuilds the tables).
# AMC_BIN selects the amc executable (default .venv/bin/amc).
set -euo pipefail
cd "$(dirname "$0")/.."

AMC=${AMC_BIN:-.venv/bin/amc}
SHARED=${AMC_SHARED:-../shared}
WHICH=${1:-resnet56}

EXTRA=()  # more amc compare options (the pooled mode's)
UNITS=internal  # the units every strategy prunes
KD=0  # resnet56()'s --kd-weight (every committed folder but native-kd's: 0)
resnet56() {  # resnet56 OUT SCORE_AMP BUDGET...: the ResNet-56 comparison's settings
  local out=$1 amp=$2 budgets=()
  shift 2
  for b in "$@"; do budgets+=(--budget "$b"); done
  $AMC compare --kd-weight "$KD" --finetune-from delivered --model resnet56 --checkpoint "$SHARED/models/resnet56-cifar10.th" \
      --data cifar10 --data-dir "$SHARED/data" --units "$UNITS" --val-limit 1000 --score-amp "$amp" \
      --workers 2 --threads 2 --seed 0 --seeds 3 --finetune-runs 3 --search-on adapted \
      --strategies amc,global,sensitivity,uniform,random --n-random 30 \
      --episodes 300 --warmup-episodes 20 --warm-start cheap --noise-min 0.05 \
      --finetune-epochs 1 --train-limit 5000 --lr 0.01 --batch-size 128 \
      "${budgets[@]}" ${EXTRA[@]+"${EXTRA[@]}"} --out "$out"
}

derive_config() {  # derive_config SRC DST "k=v, ...": the comparison settings SRC (a
  ${PYTHON:-.venv/bin/python} -c "import json, sys; c = json.load(open(sys.argv[1])); \
c.update(dict($3)); json.dump(c, open(sys.argv[2], 'w'), indent=1)" "$1" "$2"
}  # config.json) with those changed, written to DST: a folder made from another's artifacts
same_ratios() {  # same_ratios A B WHY: fail with "A: WHY" unless policies A, B have one ratios
  ${PYTHON:-.venv/bin/python} -c "import json, sys
a, b = ([u['ratio'] for u in json.load(open(f))['units']] for f in sys.argv[1:3])
sys.exit(0 if a == b else f'{sys.argv[1]}: {sys.argv[3]}')" "$1" "$2" "$3"
}
keep_uniform() {  # keep_uniform D: D's tables and timings of a uniform flops:0.5 call kept
  local f  # as *_uniform_flops0.5.* (the next call rewrites them with its own jobs only)
  for f in table.md table.csv table_runs.csv latency.json; do
    cp "$1/$f" "$1/${f%.*}_uniform_flops0.5.${f##*.}"
  done
}
copy_dense() {  # copy_dense SRC OUT: SRC's adapted dense model and its evaluations (not made again)
  local src=$1 out=$2 f
  mkdir -p "$out/models" "$out/eval" "$out/finetune"
  for f in models/dense_ft.pt finetune/dense_ft.csv eval/dense_before.json eval/dense_ft.json; do
    [[ -f $out/$f ]] || cp "$src/$f" "$out/$f"
  done
}
move_searches() {  # move_searches OUT: the searches copied into OUT/search read their weights
  local r n  # and blocks policies from OUT, and write there
  for r in "$1"/search/*; do
    n=$(basename "$r")
    derive_config "$r/config.json" "$r/config.json" "checkpoint='$1/models/dense_ft.pt', \
blocks_policy='$1/policies/blocks_$n.json', out='$r'"
  done
}
copy_run() {  # copy_run SRC OUT ["k=v, ..."]: SRC's comparison (scores, fine-tunes, networks,
  local src=$1 out=$2  # policies, searches, uniform flops:0.5 tables and timings) copied into
  mkdir -p "$out"  # OUT, its searches moved there, its config derived with those settings
  cp -r "$src"/{config.json,eval,finetune,models,policies,search} "$out/"
  cp "$src"/*_uniform_flops0.5.* "$out/"
  move_searches "$out"
  derive_config "$src/config.json" "$out/config.json" "${3:+$3, }out='$out'"
}
copy_peers() {  # copy_peers SRC OUT: SRC's adapted dense model and its blocks and uniform
  local d f  # latency:0.55 runs (policies, evaluations, fine-tunes, networks)
  copy_dense "$1" "$2"
  mkdir -p "$2/policies"
  for d in policies eval finetune models; do
    for f in "$1/$d"/{blocks,uniform}_latency0.55*; do cp "$f" "$2/$d/"; done
  done
}

retime() {  # retime SRC SCORE_AMP: SRC's sensitivity sweep again -> SRC/sensitivity_retimed.json
  local src=$1 amp=$2 tmp
  tmp=$(mktemp -d)
  copy_dense "$src" "$tmp"
  $AMC compare --kd-weight 0 --finetune-from delivered --model resnet56 --checkpoint "$SHARED/models/resnet56-cifar10.th" \
      --data cifar10 --data-dir "$SHARED/data" --units internal --val-limit 1000 --score-amp "$amp" \
      --workers 2 --threads 2 --seed 0 --seeds 1 --finetune-runs 0 --search-on adapted \
      --strategies sensitivity --finetune-epochs 1 --train-limit 5000 --lr 0.01 \
      --batch-size 128 --budget flops:0.5 --out "$tmp"
  cp "$tmp/sensitivity.json" "$src/sensitivity_retimed.json"
  rm -rf "$tmp"
}

if [[ $WHICH == resnet56 ]]; then
  resnet56 results/compare_resnet56 off flops:0.5 flops:0.3 latency:0.65
fi
if [[ $WHICH == retime-sweep ]]; then
  retime results/compare_resnet56 off
fi
if [[ $WHICH == pooled ]]; then
  SRC=results/compare_resnet56_bf16
  OUT=results/compare_resnet56_pooled
  mkdir -p $OUT/policies
  [[ -f $OUT/sensitivity.json ]] || cp $SRC/sensitivity.json $OUT/
  copy_dense $SRC $OUT
  for s in global sensitivity uniform random; do
    for d in models eval finetune policies; do
      for f in "$SRC/$d/${s}_"*; do [[ -f $OUT/$d/$(basename "$f") ]] || cp "$f" $OUT/$d/; done
    done
  done
  EXTRA=(--envs-per-worker 2)
  resnet56 $OUT bf16 flops:0.5
  [[ -f $OUT/sensitivity_retimed.json ]] || retime $OUT bf16
fi
if [[ $WHICH == sweep ]]; then
  OUT=results/compare_resnet56_sweep
  mkdir -p $OUT
  [[ -f $OUT/sensitivity.json || ! -f results/compare_resnet56/sensitivity.json ]] || \
      cp results/compare_resnet56/sensitivity.json $OUT/
  $AMC compare --kd-weight 0 --finetune-from delivered --model resnet56 --checkpoint "$SHARED/models/resnet56-cifar10.th" \
      --data cifar10 --data-dir "$SHARED/data" --units internal --val-limit 1000 --score-amp off \
      --workers 2 --threads 2 --seed 0 --seeds 1 --finetune-runs 0 --search-on adapted \
      --strategies sensitivity,amc,uniform,global --episodes 120 --warmup-episodes 20 \
      --warm-start cheap --sweep-warm-start --no-race \
      --finetune-epochs 1 --train-limit 5000 --lr 0.01 --batch-size 128 \
      --budget flops:0.5 --budget flops:0.3 --out $OUT
fi
if [[ $WHICH == amx ]]; then
  resnet56 results/compare_resnet56_amx auto flops:0.3
  [[ -f results/compare_resnet56_amx/sensitivity_retimed.json ]] || \
      retime results/compare_resnet56_amx auto
fi
if [[ $WHICH == amx-cap ]]; then
  SRC=results/compare_resnet56_amx
  OUT=results/compare_resnet56_amx_cap90
  mkdir -p $OUT
  for f in sensitivity.json sensitivity_retimed.json; do  # the sweep, as timed in amx
    [[ -f $OUT/$f ]] || cp $SRC/$f $OUT/
  done
  copy_dense $SRC $OUT
  EXTRA=(--max-ratio 0.9)
  resnet56 $OUT auto flops:0.3 flops:0.5
fi
if [[ $WHICH == amx-recon ]]; then
  SRC=results/compare_resnet56_amx
  OUT=results/compare_resnet56_amx_recon
  copy_dense $SRC $OUT
  EXTRA=(--max-ratio 0.9 --reconstruct)
  resnet56 $OUT auto flops:0.3
fi
if [[ $WHICH == amx-recon-reward ]]; then
  SRC=results/compare_resnet56_amx_recon
  OUT=results/compare_resnet56_amx_recon_reward
  copy_dense $SRC $OUT
  for f in sensitivity.json latency.json; do [[ -f $OUT/$f ]] || cp $SRC/$f $OUT/; done
  mkdir -p $OUT/policies $OUT/search
  for f in "$SRC"/policies/*.json; do [[ -f $OUT/policies/$(basename "$f") ]] || cp "$f" $OUT/policies/; done
  for d in "$SRC"/search/*/; do [[ -d $OUT/search/$(basename "$d") ]] || cp -r "$d" $OUT/search/; done
  EXTRA=(--max-ratio 0.9 --reconstruct --no-reconstruct-delivered)
  resnet56 $OUT auto flops:0.3 flops:0.5 latency:0.65
fi
if [[ $WHICH == amx-recon-fast ]]; then
  OUT=results/compare_resnet56_amx_recon_fast
  copy_dense results/compare_resnet56_amx $OUT
  $AMC compare --kd-weight 0 --finetune-from delivered --model resnet56 --checkpoint "$SHARED/models/resnet56-cifar10.th" \
      --data cifar10 --data-dir "$SHARED/data" --units internal --val-limit 1000 --score-amp auto \
      --workers 2 --threads 2 --seed 0 --seeds 1 --finetune-runs 0 --search-on adapted \
      --strategies amc,sensitivity,uniform --episodes 300 --warmup-episodes 20 \
      --warm-start cheap --noise-min 0.05 --max-ratio 0.9 --reconstruct --no-reconstruct-delivered \
      --finetune-epochs 1 --train-limit 5000 --lr 0.01 --batch-size 128 \
      --budget flops:0.3 --out $OUT
fi
if [[ $WHICH == amx-recon-reward-full ]]; then
  OUT=results/compare_resnet56_amx_recon_reward_full
  copy_dense results/compare_resnet56_amx $OUT
  EXTRA=(--max-ratio 0.9 --reconstruct --no-reconstruct-delivered)
  resnet56 $OUT auto flops:0.3 flops:0.5 latency:0.65
fi
if [[ $WHICH == amx-fused ]]; then
  OUT=results/compare_resnet56_amx_fused
  copy_dense results/compare_resnet56_amx $OUT
  EXTRA=(--max-ratio 0.9 --reconstruct)
  resnet56 $OUT auto flops:0.5 flops:0.3 latency:0.65
fi
if [[ $WHICH == native ]]; then
  EXTRA=(--max-ratio 0.9 --reconstruct --sweep-time-limit)
  resnet56 results/compare_resnet56_native auto flops:0.5 flops:0.3 latency:0.65
fi
if [[ $WHICH == native-vectors ]]; then
  OUT=results/compare_resnet56_native_vectors
  copy_dense results/compare_resnet56_native $OUT
  EXTRA=(--max-ratio 0.9 --reconstruct --sweep-time-limit)
  resnet56 $OUT auto latency:0.65
fi
if [[ $WHICH == native-all ]]; then
  UNITS=all
  EXTRA=(--max-ratio 0.9 --reconstruct --sweep-time-limit)
  resnet56 results/compare_resnet56_native_all auto flops:0.5
fi
if [[ $WHICH == native-kd ]]; then  # native's 45 networks fine-tuned with distillation
  D=results/compare_resnet56_native_kd
  if [[ ! -f $D/config.json ]]; then  # the policies: native's flops ones, native-vectors'
    mkdir -p "$D"/{policies,search}  # latency:0.65 ones (the current latency table, METHOD 6)
    for d in policies search; do
      cp -r results/compare_resnet56_native/$d/*flops* "$D/$d/"
      cp -r results/compare_resnet56_native_vectors/$d/*latency0.65* "$D/$d/"
    done
    cp results/compare_resnet56_native/sensitivity.json "$D/"
    derive_config results/compare_resnet56_native/config.json "$D/config.json" \
        "kd_weight=0.5, latency_table_method=6"
  fi
  KD=0.5
  EXTRA=(--max-ratio 0.9 --reconstruct --sweep-time-limit)
  resnet56 "$D" auto flops:0.5 flops:0.3 latency:0.65
fi
if [[ $WHICH == native-kd-plain ]]; then  # native-kd's flops:0.3 networks delivered without
  S=results/compare_resnet56_native_kd  # reconstruction (plainly pruned, BN recalibrated)
  D=results/compare_resnet56_native_kd_plain  # before the same distilled fine-tunes
  if [[ ! -f $D/config.json ]]; then  # its policies, searches' records and sweep copied
    mkdir -p "$D"/{policies,search}
    for d in policies search; do cp -r "$S/$d/"*flops0.3* "$D/$d/"; done
    cp "$S/sensitivity.json" "$D/"
    derive_config "$S/config.json" "$D/config.json" \
        "reconstruct_delivered=False, budgets=['flops:0.3']"
  fi
  KD=0.5
  EXTRA=(--max-ratio 0.9 --reconstruct --sweep-time-limit --no-reconstruct-delivered)
  resnet56 "$D" auto flops:0.3
fi
drop() {  # drop() OUT BUDGET...: the drop comparison at the given budgets
  local out=$1; shift
  local budgets=()
  for b in "$@"; do budgets+=(--budget "$b"); done
  $AMC compare --kd-weight "$KD" --finetune-from delivered --model resnet56 --checkpoint "${CKPT:-$SHARED/models/resnet56-cifar10.th}" \
      --data cifar10 --data-dir "$SHARED/data" --units internal --val-limit 1000 --score-amp auto \
      --workers 2 --threads 2 --seed 0 --seeds "$SEEDS" --finetune-runs "$SEEDS" \
      --search-on adapted --strategies amc,blocks,uniform --max-ratio 0.9 --reconstruct --drop-blocks \
      --episodes 300 --warmup-episodes 20 --warm-start cheap --noise-min 0.05 "${DROP_TIME[@]}" \
      --finetune-epochs 1 --train-limit 5000 --lr 0.01 --batch-size 128 \
      "${budgets[@]}" ${DROP_EXTRA[@]+"${DROP_EXTRA[@]}"} --out "$out"
}
DROP_EXTRA=()  # more amc compare options of drop()
DROP_TIME=(--time-limit 300)  # how long drop()'s AMC searches may take
SEEDS=${SEEDS:-3}  # drop()'s AMC seeds and baseline draws (all fine-tuned); a rerun with more
# in a finished folder adds the runs (the searches and fine-tunes made keep their artifacts)
if [[ $WHICH == drop ]]; then
  drop results/compare_resnet56_drop latency:0.5 flops:0.5
fi
if [[ $WHICH == drop55 ]]; then
  drop results/compare_resnet56_drop55 latency:0.55 flops:0.5
fi
if [[ $WHICH == drop55-swap ]]; then
  S=results/compare_resnet56_drop55
  D=results/compare_resnet56_drop55_swap
  if [[ ! -f $D/config.json ]]; then  # drop55's blocks and uniform at latency:0.55, nothing else
    mkdir -p "$D"/{policies,eval,finetune}
    for d in policies eval finetune; do
      for f in "$S/$d"/{blocks,uniform}_latency0.55*; do cp "$f" "$D/$d/"; done
    done
    cp "$S/eval/dense_before.json" "$D/eval/"
    derive_config "$S/config.json" "$D/config.json" "drop_swap=0.3, budgets=['latency:0.55']"
  fi
  DROP_EXTRA=(--drop-swap 0.3)
  drop "$D" latency:0.55
fi
if [[ $WHICH == drop55-kd-compare ]]; then  # the ~1.8x comparison, distilled fine-tunes
  D=results/compare_resnet56_drop55_kd
  if [[ ! -f $D/config.json ]]; then  # drop55-swap's latency:0.55 policies, drop55's flops:0.5
    mkdir -p "$D"/{policies,search}
    for d in policies search; do
      cp -r results/compare_resnet56_drop55_swap/$d/*latency0.55* "$D/$d/"
      cp -r results/compare_resnet56_drop55/$d/*flops0.5* "$D/$d/"
    done
    derive_config results/compare_resnet56_drop55_swap/config.json "$D/config.json" \
        "kd_weight=0.5, budgets=['latency:0.55', 'flops:0.5']"
  fi
  KD=0.5
  DROP_EXTRA=(--drop-swap 0.3)
  drop "$D" latency:0.55 flops:0.5
fi
if [[ $WHICH == drop55-kd-plain ]]; then  # drop55-kd-compare's networks delivered without
  S=results/compare_resnet56_drop55_kd  # reconstruction (plainly pruned, BN recalibrated)
  D=results/compare_resnet56_drop55_kd_plain  # before the same distilled fine-tunes
  if [[ ! -f $D/config.json ]]; then  # its policies, searches' records and latencies copied
    mkdir -p "$D"
    cp -r "$S/policies" "$S/search" "$S/latency.json" "$D/"
    derive_config "$S/config.json" "$D/config.json" "reconstruct_delivered=False"
  fi
  KD=0.5
  DROP_EXTRA=(--drop-swap 0.3 --no-reconstruct-delivered)
  drop "$D" latency:0.55 flops:0.5
fi
if [[ $WHICH == drop55-pairs ]]; then  # drop55-kd-plain's latency:0.55 comparison with
  S=results/compare_resnet56_drop55_kd_plain  # --pair-moves 0.5 in AMC's searches (searched
  D=results/compare_resnet56_drop55_pairs  # again); blocks and uniform copied with their
  if [[ ! -f $D/config.json ]]; then  # scores, fine-tunes and adapted dense model
    copy_peers "$S" "$D"
    derive_config "$S/config.json" "$D/config.json" \
        "pair_moves=0.5, anchor_every=1, budgets=['latency:0.55'], out='$D'"
  fi
  KD=0.5
  DROP_EXTRA=(--drop-swap 0.3 --no-reconstruct-delivered --pair-moves 0.5 --anchor-every 1)
  drop "$D" latency:0.55
fi
if [[ $WHICH == drop55-finalists ]]; then  # drop55-pairs with --finalists 4: its searches'
  S=results/compare_resnet56_drop55_pairs  # episodes kept (picked again: a finished search
  D=results/compare_resnet56_drop55_finalists  # is refinished when only how it picks changed),
  if [[ ! -f $D/config.json ]]; then  # blocks and uniform copied with their scores and
    copy_peers "$S" "$D"  # fine-tunes, and the adapted dense model
    cp -r "$S/search" "$D/"
    move_searches "$D"
    derive_config "$S/config.json" "$D/config.json" "finalists=4, out='$D'"
  fi
  KD=0.5
  DROP_EXTRA=(--drop-swap 0.3 --no-reconstruct-delivered --pair-moves 0.5 --anchor-every 1
              --finalists 4 --finalist-margin-se 0)
  drop "$D" latency:0.55
fi
if [[ $WHICH == drop55-finalists-blocks ]]; then  # drop55-pairs' comparison with AMC searched
  S=results/compare_resnet56_drop55_pairs  # again, each search warm-started from the blocks
  D=results/compare_resnet56_drop55_finalists_blocks  # candidate best after a short fine-tune
  if [[ ! -f $D/config.json ]]; then  # (--blocks-finalists 3) and ending with --finalists 4;
    copy_peers "$S" "$D"  # blocks and uniform copied with their scores and fine-tunes
    derive_config "$S/config.json" "$D/config.json" \
        "finalists=4, blocks_finalists=3, out='$D'"
  fi
  KD=0.5
  DROP_EXTRA=(--drop-swap 0.3 --no-reconstruct-delivered --pair-moves 0.5 --anchor-every 1
              --finalists 4 --blocks-finalists 3 --finalist-margin-se 0)
  drop "$D" latency:0.55
fi
if [[ $WHICH == drop55-vectors ]]; then  # drop55-finalists-blocks' settings and adapted dense
  S=results/compare_resnet56_drop55_finalists_blocks  # model, every strategy run again with
  D=results/compare_resnet56_drop55_vectors  # the latency table of METHOD 7 (a conv's inputs
  if [[ ! -f $D/config.json ]]; then  # past one vector counted in whole vectors)
    copy_dense "$S" "$D"
    derive_config "$S/config.json" "$D/config.json" "latency_table_method=7, out='$D'"
  fi
  KD=0.5
  DROP_EXTRA=(--drop-swap 0.3 --no-reconstruct-delivered --pair-moves 0.5 --anchor-every 1
              --finalists 4 --blocks-finalists 3 --finalist-margin-se 0)
  drop "$D" latency:0.55 ${VECTORS_MORE:+latency:0.57}
fi
if [[ $WHICH == drop55-fill ]]; then  # drop55-vectors' settings, vectors filled (or not)
  D=results/compare_resnet56_drop55_fill
  KD=0.5
  DROP_EXTRA=(--drop-swap 0.3 --no-reconstruct-delivered --pair-moves 0.5 --anchor-every 1
              --finalists 4 --blocks-finalists 3 --finalist-margin-se 0)
  if [[ -n ${NOFILL:-} ]]; then
    copy_dense "$D" "${D/fill/nofill}"
    D=${D/fill/nofill}
    DROP_EXTRA+=(--no-fill-vectors)
  fi
  BASE=("${DROP_EXTRA[@]}")
  DROP_EXTRA+=(--strategies uniform)  # the last --strategies counts
  drop "$D" flops:0.5
  keep_uniform "$D"
  DROP_EXTRA=("${BASE[@]}")
  drop "$D" latency:0.55
fi
grid() {  # grid SRC OUT "k=v, ..." BUDGET [RECON [MARGIN]]: drop55-fill's options (KD 0.5,
  local src=$1 out=$2 recon=${5:---no-reconstruct-delivered} margin=${6:-0}  # finalists) at
  # BUDGET in OUT, from SRC's
  # adapted dense model with its uniform flops:0.5 runs
  if [[ ! -f $out/config.json ]]; then  # (policies, scores, fine-tunes, table, timings) copied
    copy_dense "$src" "$out"
    mkdir -p "$out/policies"
    for d in policies eval finetune models; do cp "$src/$d"/uniform_flops0.5* "$out/$d/"; done
    cp "$src"/*_uniform_flops0.5.* "$out/"
    derive_config "$src/config.json" "$out/config.json" "$3, out='$out'"
  fi
  KD=0.5  # RECON: how the scores and deliveries reconstruct (default: in the scores only);
  DROP_EXTRA=(--drop-swap 0.3 "$recon" --pair-moves 0.5 --anchor-every 1  # MARGIN: the
              --finalists 4 --blocks-finalists 3 --finalist-margin-se "$margin")  # finalists'
  # --finalist-margin-se (default 0, the rule of the modes made before it)
  drop "$out" "$4"
}
if [[ $WHICH == drop55-grid ]]; then  # drop55-fill's comparison with METHOD 8's table
  grid results/compare_resnet56_drop55_fill results/compare_resnet56_drop55_grid \
      "latency_table_method=8" latency:0.55
fi
# `drop54-grid`: drop55-grid's comparison at latency:0.54 (its 2-thread speed-ups missed 1.8x by
# 0.02-0.03 at 0.55), from drop55-grid's adapted dense model, with its uniform flops:0.5 runs
# copied -> results/compare_resnet56_drop54_grid/ (~40 min for SEEDS=3, the default).
if [[ $WHICH == drop54-grid ]]; then
  grid results/compare_resnet56_drop55_grid results/compare_resnet56_drop54_grid \
      "budgets=['latency:0.54']" latency:0.54
fi
# `drop54-plain`: drop54-grid's comparison with every score plain (--no-reconstruct: pruned and
# BN-recalibrated, the network delivered and fine-tuned, no least-squares refit first), from
# drop54-grid's adapted dense model, with its uniform flops:0.5 runs copied (delivered plainly
# there too) -> results/compare_resnet56_drop54_plain/ (~40 min).
if [[ $WHICH == drop54-plain ]]; then
  grid results/compare_resnet56_drop54_grid results/compare_resnet56_drop54_plain \
      "reconstruct=False, reconstruct_delivered=True" latency:0.54 --no-reconstruct
fi
ftone() {  # ftone DENSE_FOLDER POLICY OUT IMAGES KD RUN [EPOCHS]: POLICY applied to
  [[ -f $3/summary.json ]] && return 0  # DENSE_FOLDER's adapted dense model (one-shot),
  $AMC finetune --model resnet56 --checkpoint "$1/models/dense_ft.pt" --data cifar10 \
      --data-dir "$SHARED/data" --policy "$2" --epochs "${7:-1}" --train-limit "$4" \
      --lr "${FT_LR:-0.01}" --batch-size "${FT_BS:-128}" --seed "$6" --threads 2 \
      --kd-weight "$5" --out "$3" --force
}  # fine-tuned EPOCHS (1) epochs over IMAGES training images, seed RUN, --kd-weight KD
# (FT_LR / FT_BS: another learning rate / batch size than the comparison's 0.01 / 128)
ftruns() {  # ftruns DENSE_FOLDER POLICY_FOLDER RUNS IMAGES KD NAME...: POLICY_FOLDER's
  local d=$1 p=$2 runs=$3 images=$4 kd=$5 name run sfx  # policies NAME (runs 0-2) through
  shift 5  # ftone, seed = run; KD empty: --kd-weight 0
  for name in "$@"; do
    for run in 0 1 2; do
      sfx=$([[ $run == 0 ]] || echo "_s$run")
      ftone "$d" "$p/policies/$name$sfx.json" "$runs/$name${kd:+_kd$kd}$sfx" "$images" \
          "${kd:-0}" "$run"
    done
  done
}
if [[ $WHICH == drop55-kd ]]; then  # needs drop55-swap's adapted dense model (models/, ignored)
  D=results/compare_resnet56_drop55_swap
  for kd in 0 0.5; do
    ftruns "$D" "$D" runs/drop55_kd 5000 "$kd" amc_latency0.55
    ftruns "$D" results/compare_resnet56_drop55 runs/drop55_kd 5000 "$kd" uniform_flops0.5
  done
  ${PYTHON:-.venv/bin/python} scripts/finetune_summary.py --runs runs/drop55_kd \
      --out "$D/finetune_kd"
fi
kdarms() {  # kdarms RUNS NETS "IMAGES KD"...: the networks NETS ("NAME=POLICY_FOLDER ...",
  local D=results/compare_resnet56_drop55_swap runs=$1 nets=$2 run np name p sfx arm images kd
  shift 2  # runs 0-2 of each) fine-tuned from drop55-swap's adapted dense model as
  for run in 0 1 2; do  # drop55-kd's, one run per arm, the arms in turn per network and run
    for np in $nets; do
      name=${np%%=*} p=${np#*=}
      sfx=$([[ $run == 0 ]] || echo "_s$run")
      for arm in "$@"; do
        read -r images kd <<<"$arm"
        ftone "$D" "$p/policies/$name$sfx.json" "$runs/${name}_${images}_kd$kd$sfx" \
            "$images" "$kd" "$run"
      done
    done
  done
  ${PYTHON:-.venv/bin/python} scripts/finetune_summary.py --runs "$runs" --out "$D/$(basename "$runs")"
}
KDNETS="amc_latency0.55=results/compare_resnet56_drop55_swap \
uniform_flops0.5=results/compare_resnet56_drop55"  # drop55-swap's AMC ~1.8x, drop55's uniform
if [[ $WHICH == drop55-kd-time ]]; then  # 5,000 / 7,000 (the time distillation took in
  # drop55-kd: 1.35-1.50x) / 15,000 images without distillation, 5,000 / 15,000 with
  kdarms runs/drop55_kd_time "$KDNETS" "5000 0" "5000 0.5" "7000 0" "15000 0" "15000 0.5"
fi
if [[ $WHICH == drop55-kd-teacher ]]; then  # drop55-kd-time's distilled arms again with the
  kdarms runs/drop55_kd_teacher "$KDNETS" "5000 0" "5000 0.5" "15000 0.5"  # folded bf16 teacher
fi
if [[ $WHICH == flops03-kd-time ]]; then  # at flops:0.3: compare_resnet56_native's AMC and
  kdarms runs/flops03_kd_time "amc_flops0.3=results/compare_resnet56_native \
uniform_flops0.3=results/compare_resnet56_native" "5000 0" "5000 0.5" "7000 0"  # uniform
fi  # policies (searched on that folder's adapted model) applied to drop55-swap's
if [[ $WHICH == drop55-ft ]]; then
  D=results/compare_resnet56_drop55
  ftruns "$D" "$D" runs/drop55_ft 15000 "" amc_latency0.55 blocks_latency0.55 uniform_flops0.5
  ${PYTHON:-.venv/bin/python} scripts/finetune_summary.py --runs runs/drop55_ft \
      --out "$D/finetune_15k"
fi
if [[ $WHICH == drop55-swap-ft ]]; then  # drop55-swap's AMC networks, as drop55-ft's
  D=results/compare_resnet56_drop55_swap
  ftruns "$D" "$D" runs/drop55_swap_ft 15000 "" amc_latency0.55
  ${PYTHON:-.venv/bin/python} scripts/finetune_summary.py --runs runs/drop55_swap_ft \
      --out "$D/finetune_15k"
fi
# `drop55-grid-ft`: drop55-grid's networks at ~1.8x (amc and blocks at latency:0.55, runs 0-4)
# and uniform flops:0.5 (one policy: its draws differ in BN recalibration only; fine-tuning
# seeds 0-4) fine-tuned longer, alike: 1 epoch over every training image (45,000, 9x the
# comparison's), distilled from the folder's adapted dense model (--kd-weight 0.5, the
# default), one-shot from the policy; run by run, the three networks in turn, so a stopped
# job leaves paired runs; weights in runs/drop55_grid_ft/ (run drop55-grid first: its adapted
# dense model is git-ignored) -> results/compare_resnet56_drop55_grid/finetune_45k.* with
# each network minus uniform flops:0.5 (~70 min).
if [[ $WHICH == drop55-grid-ft ]]; then
  D=results/compare_resnet56_drop55_grid
  for run in 0 1 2 3 4; do
    sfx=$([[ $run == 0 ]] || echo "_s$run")
    for name in amc_latency0.55 blocks_latency0.55 uniform_flops0.5; do
      p=$D/policies/$name$sfx.json
      [[ -f $p ]] || p=$D/policies/$name.json
      ftone "$D" "$p" "runs/drop55_grid_ft/$name$sfx" 45000 0.5 "$run"
    done
  done
  ${PYTHON:-.venv/bin/python} scripts/finetune_summary.py --runs runs/drop55_grid_ft \
      --out "$D/finetune_45k" --against uniform_flops0.5
fi
# `drop54-margin`: drop54-plain's searches picked again with --finalist-margin-se 1 (a finalist
# replaces the search's pick only when it leads it on val after the short fine-tune by more
# than one standard error of the difference; the modes made before the option pass 0, the rule
# they ran with): the folder copied (episodes, blocks and uniform runs kept), the AMC policies,
# scores, fine-tunes and timings made again -> results/compare_resnet56_drop54_margin/ (~20 min).
if [[ $WHICH == drop54-margin ]]; then
  S=results/compare_resnet56_drop54_plain
  D=results/compare_resnet56_drop54_margin
  if [[ ! -f $D/config.json ]]; then
    copy_run "$S" "$D" "finalist_margin_se=1.0"
    rm -f "$D"/{eval,finetune,models,policies}/amc_*
  fi
  KD=0.5
  DROP_EXTRA=(--drop-swap 0.3 --no-reconstruct --pair-moves 0.5 --anchor-every 1
              --finalists 4 --blocks-finalists 3 --finalist-margin-se 1)
  drop "$D" latency:0.54
fi
# `drop54-all`: drop54-margin's comparison with the issue's other strategies added (global,
# sensitivity, random: channel pruning only, so each reaches latency:0.54 at about a quarter of
# the MACs), the folder copied (AMC, blocks and uniform runs kept, their 45k fine-tunes' summary
# too), the sensitivity sweep timed for the search-time check, every network timed again side by
# side -> results/compare_resnet56_drop54_all/ (~35 min).
if [[ $WHICH == drop54-all ]]; then
  S=results/compare_resnet56_drop54_margin
  D=results/compare_resnet56_drop54_all
  if [[ ! -f $D/config.json ]]; then
    copy_run "$S" "$D"
    cp "$S"/finetune_45k.* "$D/"
  fi
  KD=0.5
  DROP_EXTRA=(--drop-swap 0.3 --no-reconstruct --pair-moves 0.5 --anchor-every 1
              --finalists 4 --blocks-finalists 3 --finalist-margin-se 1
              --strategies amc,blocks,uniform,global,sensitivity,random)
  drop "$D" latency:0.54
fi
# `drop53`: drop54-margin's comparison (plain scores, finalist margin 1) at latency:0.53, for a
# margin on the 2-thread 1.8x (drop54-margin's measures 1.73-1.78x), from drop54-margin's
# adapted dense model with its uniform flops:0.5 runs copied
# -> results/compare_resnet56_drop53/ (~40 min).
if [[ $WHICH == drop53 ]]; then
  grid results/compare_resnet56_drop54_margin results/compare_resnet56_drop53 \
      "budgets=['latency:0.53']" latency:0.53 --no-reconstruct 1
fi
# `drop53-timed`: drop53's comparison with the issue's other strategies added (global,
# sensitivity, random) and AMC's searches made again, each as long as the sensitivity sweep
# (timed first in this run) in all: --sweep-time-limit with --time-limit-finalists (the blocks
# finalists' and finalists' fine-tunes and the latency check inside the limit, the episodes
# stopping earlier to leave them room; the blocks policy made for each search counted too).
# The blocks policies are made again (the same ratios, checked: they now record their scored
# candidates, which each search picks its blocks finalists among instead of scoring them
# again); blocks' and uniform's scores and fine-tunes, and the adapted dense model, copied
# -> results/compare_resnet56_drop53_timed/ (~60 min).
if [[ $WHICH == drop53-timed ]]; then
  S=results/compare_resnet56_drop53
  D=results/compare_resnet56_drop53_timed
  if [[ ! -f $D/config.json ]]; then
    copy_run "$S" "$D" "time_limit=None, sweep_time_limit=True, time_limit_finalists=True"
    rm -rf "$D/search"
    rm -f "$D"/{eval,finetune,models,policies}/amc_* "$D"/policies/blocks_*
  fi
  KD=0.5
  DROP_TIME=(--sweep-time-limit --time-limit-finalists)
  DROP_EXTRA=(--drop-swap 0.3 --no-reconstruct --pair-moves 0.5 --anchor-every 1
              --finalists 4 --blocks-finalists 3 --finalist-margin-se 1
              --strategies amc,blocks,uniform,global,sensitivity,random)
  drop "$D" latency:0.53
  for f in "$S"/policies/blocks_*.json; do  # the cached blocks scores are of these policies
    same_ratios "$D/policies/$(basename "$f")" "$f" "other ratios than $f"
  done
fi
# `drop54-grid-ft`: drop54-grid's networks (amc and blocks at latency:0.54, runs 0 to SEEDS-1)
# fine-tuned as drop55-grid-ft's, beside drop55-grid-ft's uniform flops:0.5 runs (the same
# adapted dense model and policy; made there first when missing, their summaries copied) ->
# results/compare_resnet56_drop54_grid/finetune_45k.* (~35 min for 3 runs); `drop54-plain-ft`:
# the same for drop54-plain's networks -> results/compare_resnet56_drop54_plain/finetune_45k.*;
# `drop54-margin-ft`: drop54-margin's AMC networks only (its blocks and uniform are drop54-plain's)
# -> results/compare_resnet56_drop54_margin/finetune_45k.* (~20 min).
ft54() {  # ft54 FOLDER RUNS [NAME...]: FOLDER's networks NAME (default amc and blocks at
  local D=$1 runs=$2 run sfx name u names=(amc_latency0.54 blocks_latency0.54)  # latency:0.54)
  shift 2  # fine-tuned into RUNS (see above)
  [[ $# == 0 ]] || names=("$@")
  for ((run = 0; run < SEEDS; run++)); do
    sfx=$([[ $run == 0 ]] || echo "_s$run")
    for name in "${names[@]}"; do
      [[ ! -f $D/policies/$name$sfx.json ]] || \
        ftone "$D" "$D/policies/$name$sfx.json" "$runs/$name$sfx" 45000 0.5 "$run"
    done
    u=runs/drop55_grid_ft/uniform_flops0.5$sfx
    ftone results/compare_resnet56_drop55_grid "$D/policies/uniform_flops0.5.json" "$u" 45000 0.5 "$run"
    mkdir -p "$runs/uniform_flops0.5$sfx"
    cp "$u/summary.json" "$runs/uniform_flops0.5$sfx/"
  done
  ${PYTHON:-.venv/bin/python} scripts/finetune_summary.py --runs "$runs" \
      --out "$D/finetune_45k" --against uniform_flops0.5
}
if [[ $WHICH == drop54-grid-ft ]]; then
  ft54 results/compare_resnet56_drop54_grid runs/drop54_grid_ft
fi
if [[ $WHICH == drop54-plain-ft ]]; then
  ft54 results/compare_resnet56_drop54_plain runs/drop54_plain_ft
fi
if [[ $WHICH == drop54-margin-ft ]]; then
  ft54 results/compare_resnet56_drop54_margin runs/drop54_margin_ft amc_latency0.54
fi
if [[ $WHICH == drop53-ft ]]; then  # drop53's AMC networks, as drop54-margin-ft's
  ft54 results/compare_resnet56_drop53 runs/drop53_ft amc_latency0.53
fi
if [[ $WHICH == drop53-timed-ft ]]; then  # drop53-timed's AMC networks, as drop53-ft's
  ft54 results/compare_resnet56_drop53_timed runs/drop53_timed_ft amc_latency0.53
fi
# `fresh53`: drop53-timed's comparison made from nothing on the CPU at hand (no folder of an
# earlier session copied: its own adapted dense model, latency table, sweep and every strategy),
# first uniform at flops:0.5 (the #15 reference, its tables kept as *_uniform_flops0.5.*),
# then every strategy at latency:0.53 with AMC's searches inside the sweep's time, finalists
# included -> $FRESH (default results/compare_resnet56_fresh53/; ~90 min on 2 cores).
# `fresh53-ft`: $FRESH's AMC networks and uniform flops:0.5's (FRESH=DIR_lean: the lean ones),
# each run fine-tuned as drop53-ft's (one distilled epoch over 45,000 images) from the
# folder's own adapted dense model -> $FRESH/finetune_45k.* (~40 min; AT=0.52 for a _lean52
# folder's networks; UFT=runs/X_ft copies uniform's fine-tunes made there from the same model;
# FT_EPOCHS=E FT_KD=W another recipe -> $FRESH/finetune_45k_Eep_kdW.*).
FRESH=${FRESH:-results/compare_resnet56_fresh53}
fresh() {  # fresh FINALISTS BLOCKS_FINALISTS STRATEGIES: fresh53's options for drop()
  KD=0.5
  DROP_TIME=(--sweep-time-limit --time-limit-finalists)
  DROP_EXTRA=(--drop-swap 0.3 --no-reconstruct --pair-moves 0.5 --anchor-every 1
              --finalists "$1" --blocks-finalists "$2" --finalist-margin-se 1
              --finalist-images "${FINALIST_IMAGES:-5000}"  # 2,000 where the sweep is quick
              --strategies "$3")
}
ALL=amc,blocks,uniform,global,sensitivity,random
if [[ $WHICH == fresh53 ]]; then
  if [[ ! -f $FRESH/table_uniform_flops0.5.md ]]; then
    fresh 4 3 uniform
    drop "$FRESH" flops:0.5
    keep_uniform "$FRESH"
  fi
  fresh 4 3 "$ALL"
  drop "$FRESH" latency:0.53
fi
# `fresh53-lean`: fresh53's comparison with AMC searched again without the fine-tuned
# finalists (--finalists 0 --blocks-finalists 0: every second of the sweep's time left to the
# episodes after the blocks policy), everything else copied from $FRESH (its adapted dense
# model, sweep and timing, every other strategy's runs) -> ${FRESH}_lean/ (~15 min).
if [[ $WHICH == fresh53-lean ]]; then
  D=${FRESH}_lean
  if [[ ! -f $D/config.json ]]; then
    copy_run "$FRESH" "$D" "finalists=0, blocks_finalists=0"
    cp "$FRESH/sensitivity.json" "$D/"
    rm -rf "$D/search"
    rm -f "$D"/{eval,finetune,models,policies}/amc_*
  fi
  fresh 0 0 "$ALL"  # AMC's fine-tuned finalists off
  drop "$D" latency:0.53
fi
# `fresh50-lean` / `fresh52-lean`: fresh53-lean's settings at latency:0.5 (the issue's own) /
# latency:0.52 (a speed margin where the table is optimistic), every strategy made there;
# $FRESH's adapted dense model, sweep and uniform flops:0.5 runs copied, its checkpoint the one
# $FRESH's config names (FRESH=results/compare_resnet56_scratch53: runs/scratch56's)
# -> ${FRESH}_lean50/ or ${FRESH}_lean52/ (~25 min; ~40 with SEEDS=5).
if [[ $WHICH == fresh50-lean || $WHICH == fresh52-lean ]]; then
  AT=$([[ $WHICH == fresh50-lean ]] && echo 0.5 || echo 0.52)  # the budgets' names so far
  CKPT=${CKPT:-$(${PYTHON:-.venv/bin/python} -c 'import json, sys
print(json.load(open(sys.argv[1]))["checkpoint"])' "$FRESH/config.json")}  # $FRESH's dense model
  D=${FRESH}_lean${WHICH:5:2}
  if [[ ! -f $D/config.json ]]; then
    copy_dense "$FRESH" "$D"
    mkdir -p "$D/policies"
    cp "$FRESH/sensitivity.json" "$FRESH"/*_uniform_flops0.5.* "$D/"
    for d in policies eval finetune; do cp "$FRESH/$d"/uniform_flops0.5* "$D/$d/"; done
    derive_config "$FRESH/config.json" "$D/config.json" \
        "finalists=0, blocks_finalists=0, budgets=['latency:$AT'], out='$D'"
  fi
  fresh 0 0 "$ALL"  # AMC's fine-tuned finalists off
  drop "$D" "latency:$AT"
fi
if [[ $WHICH == fresh53-ft ]]; then  # fine-tunes in runs/<folder's name>_ft/ (ignored)
  FT_EPOCHS=${FT_EPOCHS:-1} FT_KD=${FT_KD:-0.5}  # another recipe: its own runs/ and files
  TAG=$([[ $FT_EPOCHS == 1 && $FT_KD == 0.5 ]] || echo "_${FT_EPOCHS}ep_kd$FT_KD")
  R=runs/$(basename "$FRESH")_ft$TAG
  AT=${AT:-0.53}  # the latency budget of $FRESH's AMC networks
  mkdir -p "$R"
  if [[ -n ${UFT:-} ]]; then  # UFT=runs/X_ft: uniform flops:0.5's fine-tunes made there from
    for f in "$UFT"/uniform_flops0.5*; do  # the same adapted dense model, not made again
      [[ -e $R/$(basename "$f") ]] || cp -r "$f" "$R/"
    done
  fi
  for ((run = 0; run < SEEDS; run++)); do
    sfx=$([[ $run == 0 ]] || echo "_s$run")
    ftone "$FRESH" "$FRESH/policies/amc_latency$AT$sfx.json" "$R/amc_latency$AT$sfx" 45000 \
        "$FT_KD" "$run" "$FT_EPOCHS"
    ftone "$FRESH" "$FRESH/policies/uniform_flops0.5.json" "$R/uniform_flops0.5$sfx" 45000 \
        "$FT_KD" "$run" "$FT_EPOCHS"
  done
  ${PYTHON:-.venv/bin/python} scripts/finetune_summary.py --runs "$R" --out "$FRESH/finetune_45k$TAG" \
      --against uniform_flops0.5
fi
# `capacity53`: $FRESH's AMC searches (FRESH=DIR_lean) made again with the capacity reward
# (--reward capacity: val top-1 + MACs kept; everything else as they were made, in
# runs/capacity53/): `capacity` with weight 1 and the folder's blocks policy, `capacity2` with
# weight 2 and the blocks candidate the search picks itself by that reward ->
# results/search_capacity_amx53.*; capacity2's picks fine-tuned as fresh53-ft's FT_EPOCHS=2
# FT_KD=0 runs, beside them in $FRESH/finetune_45k_2ep_kd0.* (run fresh53-ft with those
# first); then every AMC pick and uniform flops:0.5 timed side by side
# -> results/retime_capacity_amx53.* (~60 min with SEEDS=5).
if [[ $WHICH == capacity53 ]]; then
  W=runs/capacity53
  R=runs/$(basename "$FRESH")_ft_2ep_kd0
  ${PYTHON:-.venv/bin/python} scripts/bench_search_variants.py --folder "$FRESH" \
      --budget latency0.53 --seeds "$SEEDS" --own --arm "capacity:reward='capacity'" \
      --arm "capacity2:reward='capacity',capacity_weight=2.0,blocks_policy=None" \
      --work "$W" --out results/search_capacity_amx53
  mkdir -p "$W/policies"
  for ((run = 0; run < SEEDS; run++)); do
    sfx=$([[ $run == 0 ]] || echo "_s$run")
    cp "$W/capacity2$sfx/best_policy.json" "$W/policies/amc_capacity2_latency0.53$sfx.json"
    ftone "$FRESH" "$W/policies/amc_capacity2_latency0.53$sfx.json" \
        "$R/amc_capacity2_latency0.53$sfx" 45000 0 "$run" 2
  done
  ${PYTHON:-.venv/bin/python} scripts/finetune_summary.py --runs "$R" \
      --out "$FRESH/finetune_45k_2ep_kd0" --against uniform_flops0.5
  ${PYTHON:-.venv/bin/python} scripts/bench_retime.py --folders "$FRESH" "$W" \
      --names 'amc_latency0.53*' 'amc_capacity2_latency0.53*' 'uniform_flops0.5' \
      --out results/retime_capacity_amx53
fi
# `scratch56`: a ResNet-56 trained from random weights on our CIFAR-10 copy's training split
# with val held out (the split every comparison uses: 5,000 images, seed 0), 30 epochs, SGD lr
# 0.1 cosine after a one-epoch warm-up, batch 128, bf16 autocast, channels-last (~70 min on
# 2 AMX cores; a killed run resumes from its last epoch) -> $SCRATCH (default runs/scratch56/,
# ignored), then it and the public checkpoint scored on 10,000 random training images, val
# and test -> results/val_gap_scratch56.*: a checkpoint that never saw val should score alike
# on val and test (results/val_gap_amx53.md: the public one scores 5.5 points more on val).
# `scratch53`: fresh53-lean's comparison made from nothing on $SCRATCH's model instead of the
# public checkpoint (its own adapted model, latency table and sweep; uniform at flops:0.5
# first, then every strategy at latency:0.53, AMC without fine-tuned finalists)
# -> results/compare_resnet56_scratch53/ (~50 min); its fine-tunes as fresh53-ft's with
# FRESH=results/compare_resnet56_scratch53 (FT_EPOCHS=2 FT_KD=0: the lean folder's recipe).
SCRATCH=${SCRATCH:-runs/scratch56}
if [[ $WHICH == scratch56 ]]; then
  if [[ ! -f $SCRATCH/model.pt && -f $SCRATCH/config.json ]]; then
    $AMC finetune --resume "$SCRATCH"
  elif [[ ! -f $SCRATCH/model.pt ]]; then
    $AMC finetune --model resnet56 --data cifar10 --data-dir "$SHARED/data" --epochs 30 \
        --lr 0.1 --warmup-epochs 1 --amp bf16 --channels-last --no-test-every-epoch \
        --threads 2 --seed 0 --out "$SCRATCH"
  fi
  ${PYTHON:-.venv/bin/python} scripts/val_gap.py --splits "scratch=$SCRATCH/model.pt" \
      --splits "public=$SHARED/models/resnet56-cifar10.th" --out results/val_gap_scratch56
fi
if [[ $WHICH == scratch53 ]]; then
  D=results/compare_resnet56_scratch53
  CKPT=$SCRATCH/model.pt
  [[ -f $CKPT ]] || { echo "scratch53 needs $CKPT: run scratch56 first" >&2; exit 2; }
  if [[ ! -f $D/table_uniform_flops0.5.md ]]; then
    fresh 0 0 uniform
    drop "$D" flops:0.5
    keep_uniform "$D"
  fi
  fresh 0 0 "$ALL"  # AMC's fine-tuned finalists off
  drop "$D" latency:0.53
fi
if [[ $WHICH == bf16 ]]; then
  resnet56 results/compare_resnet56_bf16 bf16 flops:0.5
fi
if [[ $WHICH == resnet20 ]]; then
  $AMC compare --kd-weight 0 --finetune-from delivered --model resnet20 --checkpoint "$SHARED/models/resnet20-cifar10.th" \
      --data cifar10 --data-dir "$SHARED/data" --units internal --val-limit 1000 --score-amp off \
      --n-random 50 --workers 2 --threads 2 --finetune-epochs 5 --lr 0.01 --batch-size 128 \
      --seed 0 --strategies amc,uniform,global,sensitivity,random --warm-start random --no-race \
      --episodes 200 --warmup-episodes 50 --train-limit 2000 \
      --budget flops:0.3 --budget flops:0.5 --budget flops:0.7 \
      --out results/cifar10_resnet20
fi
if [[ $WHICH == bf16-retime ]]; then
  OUT=results/compare_resnet56_bf16
  BEFORE=runs/bf16_before
  mkdir -p $BEFORE
  for s in flops0.5 flops0.5_s1 flops0.5_s2; do
    if [[ -d $OUT/search/$s ]] && ! grep -q '"envs_on"' $OUT/search/$s/config.json; then
      rm -rf "${BEFORE:?}/$s"
      mv $OUT/search/$s $BEFORE/
      mv $OUT/policies/amc_$s.json $BEFORE/
    fi
  done
  resnet56 $OUT bf16 flops:0.5
  for s in flops0.5 flops0.5_s1 flops0.5_s2; do  # the cached evaluations are of these picks
    [[ ! -f $BEFORE/amc_$s.json ]] || same_ratios "$OUT/policies/amc_$s.json" \
        "$BEFORE/amc_$s.json" "another pick; delete its eval/ and finetune/ files"
  done
  [[ -f $OUT/sensitivity_retimed.json ]] || retime $OUT bf16
fi
# `ft-recipe`: is the short fine-tune's gap between $FRESH's AMC networks and uniform
# flops:0.5's (#15's last accuracy item) a matter of its recipe? Each AMC run k's policy and
# uniform flops:0.5's fine-tuned as the comparison does (one distilled epoch over 5,000 training
# images, seed k) with batch size / learning rate 128 / 0.01 (the comparison's), 128 / 0.02,
# 32 / 0.005 and 32 / 0.0025 (RECIPES="BS/LR ..." others) -> runs/<folder>_ft5k_bsB_lrL/ and
# $FRESH/finetune_5k_bsB_lrL.md/json (10-17 min per recipe with SEEDS=5, batch 128-16).
if [[ $WHICH == ft-recipe ]]; then
  AT=${AT:-0.53}
  for recipe in ${RECIPES:-128/0.01 128/0.02 32/0.005 32/0.0025}; do
    FT_BS=${recipe%/*} FT_LR=${recipe#*/}  # ftone's
    TAG=bs${FT_BS}_lr$FT_LR
    R=runs/$(basename "$FRESH")_ft5k_$TAG
    mkdir -p "$R"
    for ((run = 0; run < SEEDS; run++)); do
      sfx=$([[ $run == 0 ]] || echo "_s$run")
      ftone "$FRESH" "$FRESH/policies/amc_latency$AT$sfx.json" "$R/amc_latency$AT$sfx" 5000 \
          0.5 "$run"  # at $FT_BS / $FT_LR
      ftone "$FRESH" "$FRESH/policies/uniform_flops0.5.json" "$R/uniform_flops0.5$sfx" 5000 \
          0.5 "$run"
    done
    ${PYTHON:-.venv/bin/python} scripts/finetune_summary.py --runs "$R" \
        --out "$FRESH/finetune_5k_$TAG" --against uniform_flops0.5
  done
fi
