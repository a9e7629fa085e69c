"""Memory and speed of streamed image folders; writes ``results/bench_stream.json``.

    nohup .venv/bin/python scripts/bench_stream.py > runs/bench_stream.log 2>&1 &

1. Peak memory of ``amc search`` (10 episodes, ``--search-model``) and of ``amc finetune``
   (1 epoch, ``--finetune-model``) on synthetic folders of 5,000 and 20,000 JPEGs of mixed
   sizes (160-500 px, 10 classes; ``scripts/make_synthetic_imagefolder.py``) at 224 x 224:
   the peak RSS of the ``amc`` process, sampled every 0.2 s, and the peak PSS of it and its
   DataLoader workers together (sampled every second; PSS shares pages between processes).
   Both folders use the same ``--val-size``: the reward set has a fixed size (AMC: 3,000
   ImageNet images), so only the stream depends on the folder's size.
2. Fine-tuning images/s of the stream against the in-memory path on the same CIFAR-10 subset
   (``--cifar-train`` images written as a 32 x 32 JPEG folder): ``--data cifar10`` on that
   folder decodes it into memory, ``--data imagefolder:`` streams it; ResNet-20, one epoch,
   ``--rounds`` interleaved rounds each, the best round of each counts.

Every ``amc`` run gets one torch thread (the stream adds ``--loader-workers`` reader
processes); each step records the 1-minute load average before and after it (above 2 on
this 2-core machine, other jobs competed). Finished steps are kept in the JSON, so a killed
run resumes where it stopped (``--redo cifar_`` measures those steps again); folders and runs
go under ``--work`` (``runs/`` is not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from amc.data.synthetic import write_synthetic_imagefolder
from amc.utils.io import write_json
from amc.utils.provenance import git_commit, now, versions

GB = 1024 ** 3


def measure(argv: list[str], env: dict) -> dict:
    """Run ``argv``; its wall time, exit code and peak memory (RSS of the process, PSS of it
    and its children)."""
    t = time.perf_counter()
    proc = psutil.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True)
    peak = {"rss_main": 0, "pss_tree": 0, "rss_tree": 0}
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    tick = 0
    while proc.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
            peak["rss_main"] = max(peak["rss_main"], proc.memory_info().rss)
            peak["rss_tree"] = max(peak["rss_tree"], sum(p.memory_info().rss for p in procs))
            if tick % 5 == 0:
                peak["pss_tree"] = max(peak["pss_tree"],
                                       sum(p.memory_full_info().pss for p in procs))
        except psutil.Error:
            pass
        tick += 1
        time.sleep(0.2)
    reader.join(5)
    return {"argv": argv[2:], "rc": proc.returncode, "seconds": time.perf_counter() - t,
            "peak_rss_gb": peak["rss_main"] / GB, "peak_rss_tree_gb": peak["rss_tree"] / GB,
            "peak_pss_tree_gb": peak["pss_tree"] / GB, "tail": "".join(out[-3:])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    p.add_argument("--search-model", default="tv:resnet18")
    p.add_argument("--finetune-model", default="tv:mobilenet_v3_small")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--val-size", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--loader-workers", type=int, default=1)
    p.add_argument("--cifar-train", type=int, default=5000)
    p.add_argument("--data-dir", default="../shared/data", help="CIFAR-10 (for step 2)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--work", default="runs/bench_stream")
    p.add_argument("--out", default="results/bench_stream.json")
    p.add_argument("--redo", nargs="*", default=[], help="measure again the finished steps "
                   "whose names start with these (e.g. cifar_); the old ones are kept in "
                   "earlier_attempts")
    a = p.parse_args()
    work, out = Path(a.work), Path(a.out)
    res = json.loads(out.read_text()) if out.is_file() else {}
    res.update(command=" ".join(sys.argv), date=now(), git_commit=git_commit(),
               versions=versions(), cpus=os.cpu_count())
    res.pop("load_average", None)  # per step now (load_average_before / _after)
    steps = res.setdefault("steps", {})
    for key in [k for k in steps if a.redo and k.startswith(tuple(a.redo))]:
        res.setdefault("earlier_attempts", {})[key] = steps.pop(key)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AMC_QUIET": "1",
           "AMC_CACHE_DIR": str(work / "cache")}
    amc = [sys.executable, "-m", "amc.cli"]

    def step(key: str, argv: list[str]) -> dict:
        if key not in steps or steps[key]["rc"] != 0:
            print(f"{key}: {' '.join(argv)}", flush=True)
            load = os.getloadavg()[0]
            steps[key] = {**measure(amc + argv, env), "load_average_before": load,
                          "load_average_after": os.getloadavg()[0]}
            write_json(out, res)
            print(f"  -> rc {steps[key]['rc']}, {steps[key]['seconds']:.0f} s, peak RSS "
                  f"{steps[key]['peak_rss_gb']:.2f} GB", flush=True)
        if steps[key]["rc"] != 0:
            raise SystemExit(f"{key} failed: {steps[key]['tail'].strip()}")
        return steps[key]

    common = ["--input-size", "3", "224", "224", "--val-size", str(a.val_size), "--threads",
              "1", "--loader-workers", str(a.loader_workers), "--force"]
    for n in a.sizes:
        folder = work / f"synth{n}"
        write_synthetic_imagefolder(folder, n, n // 10)
        data = ["--data", f"imagefolder:{folder}"]
        step(f"search_{n}", ["search", "--model", a.search_model, "--num-classes", "10", *data,
                             *common, "--episodes", str(a.episodes), "--warmup-episodes",
                             str(a.episodes // 2), "--out", str(work / f"search{n}")])
        step(f"finetune_{n}", ["finetune", "--model", a.finetune_model, "--num-classes", "10",
                               *data, *common, "--epochs", "1", "--batch-size",
                               str(a.batch_size), "--no-test-every-epoch",
                               "--out", str(work / f"finetune{n}")])
    # stream vs in memory on the same CIFAR-10 subset
    sub = work / "cifar_subset"
    write_synthetic_imagefolder(sub, a.cifar_train, a.cifar_train // 5, source="cifar10",
                                data_dir=a.data_dir, min_size=32, max_size=32)
    recipe = ["--model", "resnet20", "--epochs", "1", "--batch-size", "128", "--threads", "1",
              "--val-size", str(min(500, a.cifar_train // 10)), "--no-test-every-epoch",
              "--force"]
    paths = {"memory": ["--data", "cifar10", "--data-dir", str(sub)],
             "stream": ["--data", f"imagefolder:{sub}", "--input-size", "3", "32", "32",
                        "--loader-workers", str(a.loader_workers)]}
    for r in range(a.rounds):
        for name, data in paths.items():
            run = work / f"cifar_{name}{r}"
            step(f"cifar_{name}_{r}", ["finetune", *recipe, *data, "--out", str(run)])
            s = json.loads((run / "summary.json").read_text())
            steps[f"cifar_{name}_{r}"]["images_per_s"] = s["speed"]["dense"]["images_per_s"]
    write_json(out, res)
    res["summary"] = summarise(steps, a)
    write_json(out, res)
    print(json.dumps(res["summary"], indent=2))
    return 0


def summarise(steps: dict, a: argparse.Namespace) -> dict:
    small, large = min(a.sizes), max(a.sizes)
    out: dict = {"val_size": a.val_size, "search_model": a.search_model,
                 "finetune_model": a.finetune_model}
    for cmd in ("search", "finetune"):
        s, big = steps[f"{cmd}_{small}"], steps[f"{cmd}_{large}"]
        out[cmd] = {f"peak_rss_gb_{small}": s["peak_rss_gb"],
                    f"peak_rss_gb_{large}": big["peak_rss_gb"],
                    "rss_growth": big["peak_rss_gb"] / s["peak_rss_gb"] - 1,
                    f"peak_pss_tree_gb_{small}": s["peak_pss_tree_gb"],
                    f"peak_pss_tree_gb_{large}": big["peak_pss_tree_gb"],
                    "pss_tree_growth": big["peak_pss_tree_gb"] / s["peak_pss_tree_gb"] - 1,
                    f"seconds_{small}": s["seconds"], f"seconds_{large}": big["seconds"]}
        out[cmd]["growth_below_10_percent"] = out[cmd]["rss_growth"] < 0.10
        out[cmd]["below_4_gb"] = max(s["peak_rss_gb"], big["peak_rss_gb"]) < 4.0
    best = {n: max(v["images_per_s"] for k, v in steps.items() if k.startswith(f"cifar_{n}_"))
            for n in ("memory", "stream")}
    out["cifar_images_per_s"] = best
    out["stream_over_memory"] = best["stream"] / best["memory"]
    out["stream_at_least_0.8"] = out["stream_over_memory"] >= 0.8
    return out


if __name__ == "__main__":
    sys.exit(main())
