"""What distillation adds to a fine-tuning step, with the teacher as it was and as it is.

Distillation runs the dense model forward on every training batch. It used to run as it is
(eval mode, BatchNorm unfolded, fp32); :class:`amc.train.teacher.Teacher` runs a folded copy
under the inference precision of ``--amp`` (bf16 on a CPU that computes it natively). For
each pruned network of the named policies this times, interleaved, ``--rounds`` times: one
training step of the student without distillation (forward, loss, backward, SGD step, batch
``--batch-size``), the plain teacher's forward and the :class:`Teacher`'s forward on the same
batch, each the best of ``--reps`` calls by the project's latency timer
(:func:`amc.cost.timing.interleaved`, which settles the allocator); the overhead of
distillation is the teacher's seconds over the student's step. The teachers' logits are
compared on ``val`` images (largest difference relative to the logits' scale, and top-1
agreement).

    .venv/bin/python scripts/bench_teacher.py --out results/bench_teacher.json
"""

from __future__ import annotations

import argparse
import fnmatch
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from amc.cost.timing import interleaved
from amc.data.datasets import load_dataset
from amc.models.registry import create_model
from amc.prune.policy import apply_policy, load_policy
from amc.train.teacher import Teacher
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions
from amc.utils.stats import mean_std


def students(folders: list[Path], patterns: list[str], dense: torch.nn.Module
             ) -> dict[str, torch.nn.Module]:
    """``{"<folder>/<policy>": pruned copy of dense}`` for the policies matching patterns."""
    out = {}
    for folder in folders:
        for path in sorted((folder / "policies").glob("*.json")):
            if any(fnmatch.fnmatch(path.stem, p) for p in patterns):
                out[f"{folder.name}/{path.stem}"] = apply_policy(dense, load_policy(path),
                                                                 "resnet56")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint",
                    default="results/compare_resnet56_drop55_swap/models/dense_ft.pt",
                    help="the dense ResNet-56 (teacher and the students' source)")
    ap.add_argument("--folders", nargs="+", default=["results/compare_resnet56_drop55_swap",
                                                     "results/compare_resnet56_drop55"])
    ap.add_argument("--names", nargs="+", default=["amc_latency0.55*", "uniform_flops0.5*"])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5, help="timed calls per measure and round")
    ap.add_argument("--amp", default="auto", help="the fine-tune's --amp (the Teacher's "
                    "precision: its inference precision)")
    ap.add_argument("--out", default="results/bench_teacher.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device("cpu")
    dense = create_model("resnet56", num_classes=10, checkpoint=args.checkpoint).eval()
    nets = students([Path(f) for f in args.folders], args.names, dense)
    if not nets:
        raise SystemExit("bench_teacher: error: no policy matches --names in --folders")
    x, y = load_dataset("cifar10", data_dir=args.data_dir).tensors("val", 1000)
    xb, yb = x[:args.batch_size], y[:args.batch_size]
    new = Teacher(dense, dev, amp=args.amp)
    with torch.no_grad():
        plain = torch.cat([dense(x[i:i + 250]) for i in range(0, len(x), 250)])
        folded = torch.cat([new(x[i:i + 250]) for i in range(0, len(x), 250)])
    parity = {"max_abs_diff_over_max_abs": float((folded - plain).abs().max()
                                                  / plain.abs().max()),
              "top1_agreement": float((folded.argmax(1) == plain.argmax(1)).float().mean()),
              "plain_val_top1": float((plain.argmax(1) == y).float().mean() * 100),
              "teacher_val_top1": float((folded.argmax(1) == y).float().mean() * 100),
              "images": len(y)}

    def plain_teacher():
        with torch.no_grad():
            dense(xb)

    def folded_teacher():
        new(xb)

    rows: dict[str, dict[str, list[float]]] = {}
    load0 = os.getloadavg()[0]
    for r in range(args.rounds):
        for name, net in nets.items():
            net.train()
            opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)

            def step(net=net, opt=opt):
                loss = F.cross_entropy(net(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            row = rows.setdefault(name, {"student_step_s": [], "plain_teacher_s": [],
                                         "teacher_s": []})
            ms = interleaved({"student_step_s": step, "plain_teacher_s": plain_teacher,
                              "teacher_s": folded_teacher}, runs=args.reps, rounds=1)
            for key, t in ms.items():  # the best of the round's calls
                row[key].append(t["min_ms"] / 1e3)
            print(f"round {r} {name}: step {row['student_step_s'][-1]:.3f} s, teacher plain "
                  f"{row['plain_teacher_s'][-1]:.3f} s, folded {row['teacher_s'][-1]:.3f} s",
                  flush=True)
    per_net = {}
    for name, row in rows.items():
        step = sum(row["student_step_s"]) / len(row["student_step_s"])
        plain_s = sum(row["plain_teacher_s"]) / len(row["plain_teacher_s"])
        new_s = sum(row["teacher_s"]) / len(row["teacher_s"])
        per_net[name] = {**row, "overhead_plain": plain_s / step, "overhead": new_s / step,
                         "teacher_speedup": plain_s / new_s}
    summary = {k: mean_std([v[k] for v in per_net.values()])
               for k in ("overhead_plain", "overhead", "teacher_speedup")}
    write_json(Path(args.out), {
        "command": "python scripts/bench_teacher.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}"
            for k, v in vars(args).items()),
        "date": now(), "git_commit": git_commit(), "versions": versions(),
        "threads": args.threads, "batch_size": args.batch_size, "amp": args.amp,
        "teacher_precision": new.precision.name, "checkpoint": args.checkpoint,
        "load_avg_start": load0, "load_avg_end": os.getloadavg()[0],
        "parity": parity, "networks": per_net, "summary": summary})
    print({k: f"{v['mean']:.2f} ± {v['std']:.2f}" for k, v in summary.items()})
    print(parity)


if __name__ == "__main__":
    main()
