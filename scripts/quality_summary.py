"""Check the search-quality targets (issue #15) on an ``amc compare`` folder made by
``bash scripts/bench_compare.sh``; writes ``results/quality_resnet56.md`` and ``.json``.

    .venv/bin/python scripts/quality_summary.py [--folder results/compare_resnet56]
        [--against COMMIT ...] [--reference FOLDER] [--longer FILE] [--retimed FILE]

Every figure is read from the folder (``table.csv``: mean ± std over the runs,
``table_runs.csv``, ``sensitivity.json``, the AMC searches' ``summary.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
from pathlib import Path

from amc.config.blocks import MAX_RATIO
from amc.report.compare_table import standard_error
from amc.utils.provenance import git_commit, now

SCORE_PRECISION = {"off": "fp32", "bf16": "bf16", "fp16": "fp16",
                   "auto": "the precision --score-amp auto picked"}
"""How the folder's ``score_amp`` reads (a folder made before the option scored in fp32)."""


def _floats(row: dict) -> dict:
    return {k: (v if k in ("strategy", "budget") else float(v) if v != "" else None)
            for k, v in row.items()}


def load(folder: Path) -> dict:
    agg = [_floats(r) for r in csv.DictReader(open(folder / "table.csv"))]
    runs = [_floats(r) for r in csv.DictReader(open(folder / "table_runs.csv"))]
    sweep, retimed = (json.loads((folder / n).read_text()) if (folder / n).is_file() else None
                      for n in ("sensitivity.json", "sensitivity_retimed.json"))
    searches, search_cfg = {}, {}
    for s in sorted((folder / "search").glob("*/summary.json")):
        searches[s.parent.name] = json.loads(s.read_text())
        search_cfg = json.loads((s.parent / "config.json").read_text())
    return {"agg": agg, "runs": runs, "sweep": sweep, "sweep_retimed": retimed,
            "searches": searches, "rescore_top": search_cfg.get("rescore_top", 0),
            "folder": str(folder),
            "config": json.loads((folder / "config.json").read_text()),
            "dense_ft": json.loads((folder / "eval" / "dense_ft.json").read_text()),
            "dense_before": json.loads((folder / "eval" / "dense_before.json").read_text())}


def own_uniform(folder: Path) -> dict | None:
    """The folder's own uniform flops:0.5 runs, made by an earlier call of the same
    comparison and kept as ``table_uniform_flops0.5.csv`` (``bench_compare.sh``'s
    ``fresh53``, ``drop55-fill``), as a ``--reference`` stands in (accuracy only: they were
    timed in that call, not beside this table's networks); None without that file."""
    f = folder / "table_uniform_flops0.5.csv"
    if not f.is_file():
        return None
    return {"agg": [_floats(r) for r in csv.DictReader(open(f))], "folder": str(f)}


def get(d: dict, strategy: str, budget: str) -> dict | None:
    return next((r for r in d["agg"] if r["strategy"] == strategy and r["budget"] == budget),
                None)


def se(row: dict, m: str, n_test: int = 10000) -> float:
    """Standard error of a mean over runs; for a single run, the binomial error of the
    ``n_test`` test images (the table's own rule: ``standard_error``)."""
    return standard_error({**row, f"{m}_n": row.get(f"{m}_n") or row["n"]}, m, n_test)


def speed_checks(lat: str, label: str, amc: float, uni: float | None, where: str = "",
                 note: str = "") -> list[dict]:
    """The latency budget's speed checks at one thread count: AMC's speed-up ≥ 1.8 and, when
    uniform flops:0.5's (timed with it) is given, at least as fast as that."""
    out = [{"check": f"{lat}: AMC speed-up at batch 64, {label}{where}", "value": amc,
            "target": ">= 1.8", "met": amc >= 1.8, "note": note}]
    if uni is not None:
        out.append({"check": f"{lat} AMC speed-up / uniform flops:0.5's, batch 64, {label}"
                             f"{where}", "value": amc / uni, "target": ">= 1",
                    "met": amc >= uni, "note": f"{amc:.2f} vs {uni:.2f}"})
    return out


def retimed_checks(folder: str, lat: str, retimed: dict, file: str) -> list[dict]:
    """:func:`speed_checks` on a ``bench_retime.py`` document (``file``): the folder's AMC
    networks and uniform flops:0.5 (from whichever folder it was timed in) timed side by
    side in one process, each network's speed-up the mean over its rounds; none when the
    document did not time the folder's AMC networks."""
    out = []
    amc_row = f"{folder}/amc_{lat.replace(':', '')}"
    where = f", timed side by side (`{file}`, {len(retimed['rounds'])} rounds)"
    for t, s in retimed["summary"].items():
        rows = s["per_row"]
        if amc_row not in rows:
            continue
        amc = rows[amc_row]
        uni = next((v["mean"] for k, v in rows.items() if k.endswith("/uniform_flops0.5")),
                   None)
        out += speed_checks(lat, f"{t[1:]} thread{'s' if t != 't1' else ''}", amc["mean"],
                            uni, where, f"± {amc['std']:.2f} over {amc['n']} networks"
                            if amc["std"] else "")
    return out


def checks(d: dict, reference: dict | None = None, longer: dict | None = None,
           longer_file: str = "", retimed: dict | None = None,
           retimed_file: str = "") -> list[dict]:
    """The targets' checks; ``reference``: another folder's ``load`` whose uniform flops:0.5
    row stands in where this folder has none (for the accuracy check only: speeds timed in
    other runs are not compared); ``longer``: a ``finetune_summary.py --against`` document
    (``longer_file``) of the same policies fine-tuned longer, whose AMC groups' differences
    to its reference group are checked too; ``retimed``: a ``bench_retime.py`` document
    (``retimed_file``) with the folder's AMC networks timed side by side
    (:func:`retimed_checks`)."""
    out = []

    def add(check: str, value: float | None, target: str, met: bool | None, note: str = ""):
        out.append({"check": check, "value": value, "target": target, "met": met,
                    "note": note})

    budgets = d["config"]["budgets"]
    lat = next((b for b in budgets if b.startswith("latency:")), None)
    for b in budgets:
        amc = get(d, "amc", b)
        if amc is None:
            add(f"{b}: not run", None, "", None)
            continue
        others = [r for r in d["agg"] if r["budget"] == b and r["strategy"] != "amc"]
        best = max(others, key=lambda r: r["test_before"])
        margin = amc["test_before"] - best["test_before"]
        add(f"{b}: AMC - best other ({best['strategy']}) on test before fine-tuning, points",
            margin, ">= 1.0", margin >= 1.0,
            f"combined SE {math.hypot(se(amc, 'test_before'), se(best, 'test_before')):.2f}")
        best = max(others, key=lambda r: r["test_after"])
        margin = amc["test_after"] - best["test_after"]
        add(f"{b}: AMC - best other ({best['strategy']}) on test after fine-tuning, points",
            margin, ">= 0", margin >= 0,
            f"combined SE {math.hypot(se(amc, 'test_after'), se(best, 'test_after')):.2f}")
    amc, uni = (get(d, "amc", lat) if lat else None), get(d, "uniform", "flops:0.5")
    # uniform flops:0.5 from --reference where this folder has none (accuracy only: speeds
    # timed in another run are not compared)
    ref = get(reference, "uniform", "flops:0.5") if reference and not uni else None
    if amc and (uni or ref):
        threads = d["config"]["threads"]
        for col, label in (("speedup_b64", f"{threads} threads"),
                           ("speedup_b64_1thread", "1 thread")):
            pred = amc.get("speedup_b64_table") if col == "speedup_b64" else None
            out += speed_checks(lat, label, amc[col], uni[col] if uni else None,
                                note="" if pred is None or math.isnan(pred) else
                                f"the latency table predicted {pred:.2f}")
        other = uni or ref
        where = f" ({reference['folder']})" if ref else ""
        add(f"{lat} AMC - uniform flops:0.5{where} on test after fine-tuning, points",
            amc["test_after"] - other["test_after"], ">= 0",
            amc["test_after"] >= other["test_after"],
            f"combined SE {math.hypot(se(amc, 'test_after'), se(other, 'test_after')):.2f}")
    if lat and retimed:
        timed = retimed_checks(Path(d["folder"]).name, lat, retimed, retimed_file)
        if not timed:
            raise SystemExit(f"quality_summary: error: --retimed {retimed_file} did not time "
                             f"this folder's AMC networks at {lat}; pass a bench_retime.py "
                             f"JSON made with --folders {d['folder']}")
        out += timed
    for ref_name, diffs in (longer or {}).get("against", {}).items():
        for name, x in diffs.items():
            if not name.startswith("amc"):
                continue
            runs = longer["runs"][name]
            images = {r.get("train_images") for r in runs}
            how = (f"{images.pop()} images, " if len(images) == 1 and None not in images
                   else "")
            paired = x["paired"]
            pair = ("" if paired is None else
                    f"; paired by seed {paired['mean']:+.2f} ± {paired['std'] or 0:.2f} "
                    f"(n {paired['n']})")
            se_note = "" if x["combined_se"] is None else f"combined SE {x['combined_se']:.2f}"
            add(f"{name} - {ref_name} on test after a longer fine-tune ({how}`{longer_file}`), "
                "points", x["difference"], ">= 0", x["difference"] >= 0, se_note + pair)
    if d["sweep"] is not None:
        # AMC's time as the table counts it: the search, plus the blocks policy it warm-starts
        # from and the sweep it replays (when it does), each made for it
        walls = [r["search_seconds"] for r in d["runs"]
                 if r["strategy"] == "amc" and r["search_seconds"] is not None]
        longest = max(walls) if walls else float("nan")
        shortest = min(walls) if walls else float("nan")
        mean = sum(walls) / len(walls) if walls else float("nan")
        for key, which in (("sweep", "sensitivity sweep seconds"),
                           ("sweep_retimed", "the sweep's seconds re-timed after the searches "
                            "(`sensitivity_retimed.json`, made by `bench_compare.sh`)")):
            if d.get(key) is not None:
                sweep_s = d[key]["seconds"]
                add(f"AMC search wall seconds (longest of the searches, the blocks policy and "
                    f"a replayed sweep made for it included) / {which}, both on 2 workers",
                    longest / sweep_s, "<= 1", longest <= sweep_s,
                    f"{shortest:.0f}-{longest:.0f} s (mean {mean:.0f} s, "
                    f"{mean / sweep_s:.2f}x) vs {sweep_s:.0f} s")
    return out


def first_beats(d: dict, folder: Path) -> list[dict]:
    """Per AMC search: the first of its own episodes (after the replays of the cheap
    policies) whose val top-1 beats ``global``'s, and the search's wall seconds then."""
    rows = []
    for name, s in d["searches"].items():
        cheap = s.get("cheap", {})
        if "global" not in cheap:
            continue
        eps = list(csv.DictReader(open(folder / "search" / name / "episodes.csv")))
        own = eps[len(cheap):] if s.get("warm_start") == "cheap" else eps
        g = cheap["global"]["val_top1"]
        hit = next((r for r in own if float(r["val_top1"]) > g + 1e-3), None)
        rows.append({"search": name, "global_val_top1": g,
                     "best_cheap_val_top1": max(c["val_top1"] for c in cheap.values()),
                     "best_val_top1": s["best_val_top1"],
                     "first_episode_beating_global": int(hit["episode"]) if hit else None,
                     "seconds_until_then": float(hit["run_seconds"]) if hit else None,
                     "episodes": s["episodes"],
                     "wall_seconds": s.get("wall_seconds_this_run")})
    return rows


def makespan(jobs: list[float], workers: int) -> float:
    """Seconds until ``jobs`` (in order, each to the first free worker) are all done."""
    free = [0.0] * max(1, workers)
    for j in jobs:
        free[free.index(min(free))] += j
    return max(free)


def time_split(d: dict, folder: Path) -> list[dict]:
    """Where each AMC search's wall seconds went. Its envs step in lockstep: a round of
    episodes (``envs_per_worker`` per worker) ends when the last of them is scored, each
    scored by the first free worker, so per round the makespan of the episodes' work
    (prune + repair + evaluate) on the workers is spent, the workers' shortfall is idle
    (worker-seconds), and the rest of the wall time is the episodes' steps (the agent acting,
    the remote calls) and the updates not hidden behind the evaluations."""
    rows = []
    for name, s in d["searches"].items():
        run = folder / "search" / name
        eps = list(csv.DictReader(open(run / "episodes.csv")))
        w = int(s.get("workers") or 1)
        per = int(json.loads((run / "config.json").read_text()).get("envs_per_worker") or 1)
        work = [sum(float(r[k]) for k in ("prune_s", "repair_s", "eval_s")) for r in eps]
        rounds = [work[i:i + w * per] for i in range(0, len(work), w * per)]
        spans = [makespan(r, w) for r in rounds]
        busy = sum(spans)
        wall = float(s["wall_seconds_this_run"])
        rows.append({"search": name, "wall_seconds": wall, "rounds": len(rounds),
                     "envs_per_worker": per, "slowest_work_seconds": busy,
                     "idle_worker_seconds": sum(m * w - sum(r) for m, r in zip(spans, rounds)),
                     "steps_and_updates_seconds": wall - busy,
                     "rescore_seconds": float(s.get("rescore_seconds") or 0.0),
                     "mean_episode_work_seconds": sum(work) / len(work)})
    return rows


PICKING = ("amc", "random")
"""The strategies that pick among candidates (their picks change with the search's code)."""


def against(folder: Path, commit: str) -> list[dict]:
    """Per AMC and random evaluation (``eval/amc_*.json``, ``eval/random_*.json``): test
    top-1 now and in the same file at git ``commit`` (the same seed and calibration draw, made
    by an earlier version of the search), and the paired difference."""
    rows = []
    for f in sorted(f for s in PICKING for f in (folder / "eval").glob(f"{s}_*.json")):
        old = subprocess.run(["git", "show", f"{commit}:{f.as_posix()}"], capture_output=True,
                             text=True)
        if old.returncode:
            continue
        now_, then = json.loads(f.read_text())["test_top1"], json.loads(old.stdout)["test_top1"]
        rows.append({"eval": f.stem, "test_top1": now_, f"test_top1_at_{commit}": then,
                     "difference": now_ - then})
    return rows


def _pm(r: dict, m: str, fmt: str = "{:.2f}") -> str:
    n = r.get(f"{m}_n") or r["n"]
    return fmt.format(r[m]) + (" ± " + fmt.format(r[f"{m}_std"]) if n > 1 else
                               f" (n={int(n)})" if n < r["n"] else "")


def shown(value: float, target: str, met: bool | None) -> str:
    """``value`` with 2 decimals, or as many more (up to 4) as it takes for the figure shown
    not to read as the opposite verdict (1.798 against ">= 1.8" shows as 1.798, not 1.80)."""
    op, _, bound = target.partition(" ")
    try:
        limit = float(bound)
    except ValueError:
        limit = None
    text = f"{value:.2f}"
    if met is None or limit is None or op not in (">=", "<="):
        return text
    for digits in (3, 4):
        if (float(text) >= limit if op == ">=" else float(text) <= limit) == met:
            break
        text = f"{value:.{digits}f}"
    return text


def markdown(s: dict) -> str:
    d = s["data"]
    c = d["config"]
    lines = ["# Search quality: ResNet-56 on CIFAR-10 (issue #15)", "",
             f"Made by `scripts/quality_summary.py` from `{s['folder']}` (commit "
             f"{s['git_commit']}); settings in `bash scripts/bench_compare.sh`: "
             f"--search-on {c['search_on']}, {c['seeds']} runs per strategy, "
             f"{c['episodes']} AMC episodes ({c['warmup_episodes']} warm-up, warm start "
             f"{c['warm_start']}, noise floor {c.get('noise_min', 0.0):g}, "
             + (f"stopped within {c['time_limit']:g} s (--time-limit), "
                if c.get("time_limit") else "")
             + ("stopped within the sweep's time, rescoring included (--sweep-time-limit), "
                if c.get("sweep_time_limit") else "")
             + (f"best picked among the top {d['rescore_top']} on all of val"
                if d["rescore_top"] > 1 else "the search's own best") + "), scores (BN "
             f"recalibration on {c['recal_size']} "
             f"{'val' if c.get('recal_on') == 'val' else 'train'} images, val "
             f"{c['val_limit']} images) "
             f"in {SCORE_PRECISION.get(c.get('score_amp', 'off'), c.get('score_amp'))}"
             + (", least-squares reconstruction before the recalibration in every score"
                + (" (fitted on the same val images)" if c.get("recal_on") == "val" else "")
                + (" and every delivered network" if c.get("reconstruct_delivered", True)
                   else " (the delivered networks plainly pruned and BN-recalibrated)")
                + (", each fine-tune started from the plainly pruned, BN-recalibrated network"
                   if c.get("reconstruct_delivered", True)
                   and c.get("finetune_from", "delivered") == "pruned" else "")
                if c.get("reconstruct") else "")
             + f", pruning ratios capped at {c.get('max_ratio', MAX_RATIO):g}"
             + (", whole blocks droppable (--drop-blocks)" if c.get("drop_blocks") else "")
             + (", plain scores (pruned and BN-recalibrated: --no-reconstruct)"
                if not c.get("reconstruct") else "")
             + (f", each search's pick and {c['finalists'] - 1} other finalists fine-tuned "
                "briefly, the best on val after it kept"
                + (f" only when ahead by more than {c['finalist_margin_se']:g} standard "
                   "error(s) (--finalist-margin-se)" if c.get("finalist_margin_se") else "")
                if c.get("finalists", 0) > 1 else "")
             + ((f", random: best of {c['n_random']}"
                 + (f" picked among its top {c['rescore_top']} on all of val"
                    if c.get("rescore_top", 0) > 1 else " on the val images"))
                if "random" in c.get("strategies", ["random"]) else "") + ", fine-tuning "
             f"{c['finetune_epochs']:g} epoch(s) over {c['train_limit']} train images "
             f"({c['finetune_runs'] or c['seeds']} of the {c['seeds']} runs fine-tuned).", "",
             f"Dense (adapted): test {d['dense_before']['test_top1']:.2f} %.", "",
             "| budget | strategy | n | test before ft | test after ft | MACs ratio | "
             "speed-up b64 | speed-up b64, 1 thread | search s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in d["agg"]:
        lines.append(f"| {r['budget']} | {r['strategy']} | {int(r['n'])} | "
                     f"{_pm(r, 'test_before')} | {_pm(r, 'test_after')} | "
                     f"{r['macs_ratio']:.3f} | {_pm(r, 'speedup_b64')} | "
                     f"{_pm(r, 'speedup_b64_1thread')} | {r['search_seconds']:.0f} |")
    lines += ["", "| check | value | target | met | note |", "|---|---|---|---|---|"]
    for k in s["checks"]:
        v = "" if k["value"] is None else shown(k["value"], k["target"], k["met"])
        met = {True: "yes", False: "no", None: "-"}[k["met"]]
        lines.append(f"| {k['check']} | {v} | {k['target']} | {met} | {k['note']} |")
    if s["first_beats"]:
        lines += ["", "When AMC's searches first beat `global` on val:", "",
                  "| search | global val | best cheap val | first episode after the replays "
                  "above global | seconds then | best val |", "|---|---|---|---|---|---|"]
    for r in s["first_beats"]:
        lines.append(f"| {r['search']} | {r['global_val_top1']:.2f} | "
                     f"{r['best_cheap_val_top1']:.2f} | {r['first_episode_beating_global']} | "
                     f"{r['seconds_until_then']} | {r['best_val_top1']:.2f} |")
    if s.get("time_split"):
        lines += ["", "Where each search's seconds went. The envs step in lockstep: a round "
                  "of episodes (one per worker, or `--envs-per-worker` per worker, each "
                  "scored by the first free worker) ends when the last is scored. Slowest "
                  "episode's work: the sum over rounds of the round's makespan of prune + "
                  "repair + evaluation on the workers (with one env per worker: the longest "
                  "episode); idle: what the workers waited meanwhile; steps and "
                  "updates: the rest of the wall time (the agent acting at each unit, the "
                  "remote calls, updates not hidden behind the evaluations); the rescoring "
                  "comes after:", "",
                  "| search | wall s | rounds | slowest episode's work s | idle worker-s | "
                  "steps and updates s | rescoring s | mean episode work s |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['search']} | {r['wall_seconds']:.0f} | {r['rounds']} | "
                  f"{r['slowest_work_seconds']:.0f} | {r['idle_worker_seconds']:.0f} | "
                  f"{r['steps_and_updates_seconds']:.0f} | {r['rescore_seconds']:.0f} | "
                  f"{r['mean_episode_work_seconds']:.2f} |" for r in s["time_split"]]
    rescored = {n: x["rescore"] for n, x in d["searches"].items() if x.get("rescore")}
    if rescored:
        lines += ["", f"The best policy picked on all of val (`--rescore-top "
                  f"{d['rescore_top']}`: the search's {d['rescore_top']} best distinct "
                  "policies scored again on the val images past --val-limit; val top-1 on "
                  "all of val):", "",
                  "| search | search's best episode | its val (all) | picked episode | "
                  "its val (all) | seconds |", "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {r['search_best_episode']} | {r['search_best_val_top1_all']:.2f} | "
                  f"{r['chosen_episode']} | {r['chosen_val_top1_all']:.2f} | "
                  f"{d['searches'][n]['rescore_seconds']:.0f} |" for n, r in rescored.items()]
    for c, rows in s.get("against", {}).items():
        lines += ["", f"AMC's and random's evaluations vs the same files at commit {c} (same "
                  "seeds and calibration draws; `--against`):", "",
                  f"| evaluation | test now | test at {c} | difference |", "|---|---|---|---|"]
        lines += [f"| {r['eval']} | {r['test_top1']:.2f} | {r[f'test_top1_at_{c}']:.2f} | "
                  f"{r['difference']:+.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default="results/compare_resnet56")
    p.add_argument("--out", default="results/quality_resnet56")
    p.add_argument("--against", action="append", default=[], metavar="COMMIT",
                   help="also compare AMC's and random's evaluations with the same files at "
                        "this commit "
                        "(repeat for several)")
    p.add_argument("--reference", default=None, metavar="FOLDER",
                   help="a comparison folder whose uniform flops:0.5 the latency budget's "
                        "accuracy check uses where --folder has none (default: the folder's "
                        "own table_uniform_flops0.5.csv, when it has one)")
    p.add_argument("--longer", default=None, metavar="FILE",
                   help="a finetune_summary.py --against JSON of the folder's policies "
                        "fine-tuned longer: its AMC groups' differences are checked too")
    p.add_argument("--retimed", default=None, metavar="FILE",
                   help="a bench_retime.py JSON that timed the folder's AMC networks (and "
                        "uniform flops:0.5) side by side: the latency budget's speed checks "
                        "on it too")
    args = p.parse_args()
    d = load(Path(args.folder))
    ref = load(Path(args.reference)) if args.reference else own_uniform(Path(args.folder))
    longer, retimed = (json.loads(Path(f).read_text()) if f else None
                       for f in (args.longer, args.retimed))
    s = {"made": now(), "git_commit": git_commit(), "folder": args.folder,
         "reference": ref["folder"] if ref else None, "longer": args.longer,
         "retimed": args.retimed,
         "checks": checks(d, ref, longer, args.longer or "", retimed, args.retimed or ""),
         "first_beats": first_beats(d, Path(args.folder)),
         "time_split": time_split(d, Path(args.folder)), "data": d,
         "against": {c: against(Path(args.folder), c) for c in args.against}}
    Path(args.out + ".json").write_text(json.dumps(s, indent=2, default=float) + "\n")
    Path(args.out + ".md").write_text(markdown(s))
    print(Path(args.out + ".md").read_text())


if __name__ == "__main__":
    main()
