"""Compression report: a dense model against its pruned (and optionally INT8) version.

:func:`build_report` measures, on the ``test`` split and on this machine: top-1/top-5; per-class
top-1 with the classes that lost more than ``flag_points`` flagged; top-1 on the near-boundary
slice (the ``slice_fraction`` of test images with the smallest dense top-1 minus top-2 softmax
margin); latency at batch 1 and 64 in PyTorch and onnxruntime (dense and pruned exported to
verified ONNX files; timings interleaved round by round so that load drifts hit both models);
MACs, parameters, file sizes and the peak resident memory of one batch-64 inference in a fresh
process (:mod:`amc.deploy.memprobe`); and a verdict against a top-1 drop and a PyTorch batch-64
speed-up threshold. :func:`amc.report.render.write_report` turns the result into
``report.md``, ``report.json`` and PNGs. :func:`check_targets` refuses to overwrite a report.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from amc.config.blocks import ArchConfig, DataConfig, OutputConfig, RunConfig
from amc.utils.errors import AmcError, and_more

VERDICT_BATCH = 64
OUTPUTS = ("report.md", "report.json", "per_class.png", "latency.png", "margin.png")
ONNX_FILES = ("dense.onnx", "pruned.onnx")


@dataclass(kw_only=True)
class ReportConfig(ArchConfig, DataConfig, RunConfig, OutputConfig):
    """What to compare and how (``out``: the folder for report.md, report.json and PNGs;
    ``threads``: of PyTorch, ONNX Runtime and the memory probes).

    Attributes:
        dense: Dense checkpoint file.
        pruned: Pruned model file written by ``amc apply`` (pruned shapes inside).
        int8: INT8 ONNX file (of the pruned or the dense model), optional.
        onnx_dir: Folder for the dense/pruned ONNX exports (default: ``out``).
        max_drop: Largest allowed top-1 drop of the pruned model, in points.
        min_speedup: Smallest allowed PyTorch speed-up of the pruned model at batch 64.
        runs: Timed runs per model, engine and batch size.
        rounds: Rounds the timed runs are interleaved in.
        flag_points: A class is flagged when its top-1 drops by more than this.
        slice_fraction: Share of test images in the near-boundary slice.
        command: The command line, for provenance.
    """

    dense: str
    pruned: str
    int8: str | None = None
    onnx_dir: str | None = None
    max_drop: float = 1.0
    min_speedup: float = 1.3
    runs: int = 30
    rounds: int = 3
    flag_points: float = 2.0
    slice_fraction: float = 0.1
    command: str = ""


# ----------------------------------------------------------------------------- pure parts


def flag_classes(classes: list[str], dense: list[float], pruned: list[float],
                 points: float = 2.0) -> list[dict]:
    """Per-class rows; ``flagged`` when top-1 fell by more than ``points`` (NaN: no images).

    Args:
        classes: Class names in label order.
        dense: Dense top-1 per class, in percent.
        pruned: Pruned top-1 per class, in percent.
        points: Largest drop that is not flagged.
    """
    if not len(classes) == len(dense) == len(pruned):
        raise AmcError(f"per-class lists differ in length ({len(classes)} classes, "
                       f"{len(dense)} dense, {len(pruned)} pruned)")
    rows = []
    for name, d, p in zip(classes, dense, pruned):
        diff = p - d
        rows.append({"class": name, "dense": d, "pruned": p, "diff": diff,
                     "flagged": bool(not math.isnan(diff) and -diff > points)})
    return rows


def margins(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 softmax probability of each row."""
    top = logits.float().softmax(1).topk(min(2, logits.shape[1]), dim=1).values
    return top[:, 0] - top[:, 1] if top.shape[1] > 1 else top[:, 0]


def near_boundary(dense_logits: torch.Tensor, y: torch.Tensor,
                  preds: dict[str, torch.Tensor], fraction: float = 0.1) -> dict:
    """Top-1 of each model on the ``fraction`` of images with the smallest dense margin.

    Args:
        dense_logits: Dense logits; they define the margins.
        y: Labels.
        preds: Model label -> predicted classes.
        fraction: Share of images in the slice.

    Returns:
        Slice size and largest margin in it; per model the top-1 on the slice and on the rest,
        and the agreement with the dense model on the slice; top-1 per margin decile.
    """
    m = margins(dense_logits)
    order = torch.argsort(m, stable=True)
    k = max(1, math.ceil(fraction * len(y)))
    sl, rest = order[:k], order[k:]

    def acc(p: torch.Tensor, idx: torch.Tensor) -> float | None:
        return float((p[idx] == y[idx]).float().mean() * 100) if len(idx) else None

    dense_pred = preds.get("dense", dense_logits.argmax(1))
    deciles = [c for c in torch.tensor_split(order, 10) if len(c)]
    return {"fraction": fraction, "n": k, "n_total": len(y), "margin_max": float(m[sl].max()),
            "models": {name: {"top1": acc(p, sl), "top1_rest": acc(p, rest),
                              "agree_with_dense": float((p[sl] == dense_pred[sl]).float()
                                                        .mean() * 100)}
                       for name, p in preds.items()},
            "deciles": {name: [acc(p, c) for c in deciles] for name, p in preds.items()}}


def verdict(top1_drop: float, speedup: float, max_drop: float, min_speedup: float) -> dict:
    """Check the pruned model: top-1 drop <= ``max_drop`` and PyTorch batch-64 speed-up
    >= ``min_speedup``; ``failed`` names the checks that did not hold."""
    checks = [
        {"check": "top1_drop", "what": "top-1 drop on test (dense - pruned), points",
         "value": top1_drop, "limit": max_drop, "rule": "<=", "pass": top1_drop <= max_drop},
        {"check": "speedup_pytorch_b64",
         "what": f"measured PyTorch speed-up at batch {VERDICT_BATCH} (dense / pruned median)",
         "value": speedup, "limit": min_speedup, "rule": ">=", "pass": speedup >= min_speedup},
    ]
    return {"pass": all(c["pass"] for c in checks), "checks": checks,
            "failed": [c["check"] for c in checks if not c["pass"]]}


def check_targets(cfg: ReportConfig) -> list[Path]:
    """The files a report writes; refuses an existing report unless ``cfg.force``.

    Raises:
        AmcError: if ``out`` is a file, holds any of :data:`OUTPUTS` (no ``force``), or an
            ONNX target exists (no ``force``) or is the ``--int8`` input.
    """
    out, onnx_dir = Path(cfg.out), Path(cfg.onnx_dir or cfg.out)
    for d, what in ((out, "--out"), (onnx_dir, "--onnx-dir")):
        if d.exists() and not d.is_dir():
            raise AmcError(f"{what} {str(d)!r} is a file; pass a folder")
    held = [n for n in OUTPUTS if (out / n).exists()]
    if held and not cfg.force:
        raise AmcError(f"{out} already holds {and_more(held)}"
                       + (" of a report's files" if len(held) > 1 else "")
                       + "; pass --force to overwrite them or choose another --out")
    onnx = [onnx_dir / f for f in ONNX_FILES]
    if cfg.int8 and Path(cfg.int8).resolve() in {p.resolve() for p in onnx}:
        raise AmcError(f"--int8 {cfg.int8} would be overwritten by the report's own ONNX "
                       "export; move it or pass another --onnx-dir")
    existing = [p for p in onnx if p.exists()]
    if existing and not cfg.force:
        raise AmcError(f"{existing[0]} already exists; pass --force to overwrite it or choose "
                       "another --onnx-dir")
    return [out / f for f in OUTPUTS] + onnx


# ----------------------------------------------------------------------------- measuring


def _load(cfg: ReportConfig):
    """Models, data and the INT8 session, all checked before anything is written."""
    from amc.data.datasets import load_dataset
    from amc.models.checkpoint import checkpoint_model_name
    from amc.models.evaluate import check_model_data
    from amc.models.registry import create_model

    for path, what in ((cfg.dense, "--dense"), (cfg.pruned, "--pruned")):
        if not Path(path).is_file():
            raise AmcError(f"{what} file {path!r} does not exist; pass an existing checkpoint")
    stored = checkpoint_model_name(cfg.pruned, cfg.unsafe_load)
    if stored is None:
        raise AmcError(f"--pruned {cfg.pruned} is not a model file written by `amc apply` (no "
                       "pruned shapes inside); pass the file `amc apply --out` wrote")
    if stored != cfg.model:
        raise AmcError(f"--pruned {cfg.pruned} holds a {stored}, not a {cfg.model}; pass the "
                       "matching --model")
    kw = {"num_classes": cfg.num_classes, "unsafe_load": cfg.unsafe_load}
    dense = create_model(cfg.model, checkpoint=cfg.dense, **kw)
    pruned = create_model(cfg.model, checkpoint=cfg.pruned, **kw)
    data = load_dataset(cfg.data, **cfg.dataset_kwargs(cfg.model))
    for m, what in ((dense, "dense"), (pruned, "pruned")):
        check_model_data(m, data, f"{cfg.model} ({what})")
    return dense, pruned, data


def _int8_source(cfg: ReportConfig, dense: nn.Module, pruned: nn.Module,
                 x: torch.Tensor) -> tuple[str, dict]:
    """Which model the INT8 file holds (``pruned`` or ``dense``) and its check report."""
    from amc.deploy.export import check_onnx

    reps = {}
    for name, m in (("pruned", pruned), ("dense", dense)):
        rep = check_onnx(cfg.int8, m, tuple(x.shape[1:]), x, rtol=None, strict=False)
        if rep.channels_ok:
            return name, rep.as_dict()
        reps[name] = rep
    raise AmcError(f"--int8 {cfg.int8} has output channels {reps['pruned'].channels['export']}, "
                   "which match neither the pruned nor the dense model; pass the INT8 file of "
                   "the pruned model")


def build_report(cfg: ReportConfig) -> dict:
    """Measure everything the report shows; writes only the ONNX exports (to ``onnx_dir``).

    Raises:
        AmcError: on bad inputs (checked before anything is written) and on failed exports.
    """
    from amc.cost.macs import model_cost
    from amc.cost.timing import measure_latencies, num_threads, ort_logits, ort_session
    from amc.deploy.export import export_onnx
    from amc.deploy.memprobe import Probe, run_probes
    from amc.models.evaluate import accuracy_from_logits, predict
    from amc.utils.provenance import git_commit, now, versions

    if cfg.threads < 1 or cfg.runs < 1 or cfg.rounds < 1 or cfg.min_speedup < 0:
        raise AmcError("--threads, --runs and --rounds must be >= 1 and --min-speedup >= 0")
    if not 0 < cfg.slice_fraction <= 1:
        raise AmcError(f"--slice-fraction {cfg.slice_fraction} must lie in (0, 1]")
    check_targets(cfg)
    started, t0 = now(), time.perf_counter()
    dense, pruned, data = _load(cfg)
    x, y = data.tensors("test")
    int8_of, int8_check = _int8_source(cfg, dense, pruned, x[:64]) if cfg.int8 else (None, None)

    with num_threads(cfg.threads):
        logits = {"dense": predict(dense, x), "pruned": predict(pruned, x)}
    if cfg.int8:
        logits["int8"] = ort_logits(ort_session(cfg.int8, cfg.threads), x)
    acc = {}
    for k, lg in logits.items():
        t1, t5, pc = accuracy_from_logits(lg, y, data.num_classes)
        acc[k] = {"top1": t1, "top5": t5, "per_class": pc}
    diffs = {f"{k}_vs_dense": {m: acc[k][m] - acc["dense"][m] for m in ("top1", "top5")}
             for k in acc if k != "dense"}
    rows = flag_classes(data.classes, acc["dense"]["per_class"], acc["pruned"]["per_class"],
                        cfg.flag_points)
    for r, v in zip(rows, acc.get("int8", {}).get("per_class", [])):
        r["int8"] = v
    preds = {k: lg.argmax(1) for k, lg in logits.items()}
    boundary = near_boundary(logits["dense"], y, preds, cfg.slice_fraction)

    onnx_dir = Path(cfg.onnx_dir or cfg.out)
    exports = {k: export_onnx(m, onnx_dir / f"{k}.onnx", data.input_size, x[:64])
               for k, m in (("dense", dense), ("pruned", pruned))}
    onnx_files = {k: Path(r.path) for k, r in exports.items()}
    if cfg.int8:
        onnx_files["int8"] = Path(cfg.int8)
    latency = measure_latencies({"dense": dense, "pruned": pruned}, onnx_files, data.input_size,
                                cfg.threads, cfg.runs, cfg.rounds)
    probes = [Probe(k, "pytorch", cfg.model, ckpt, cfg.num_classes)
              for k, ckpt in (("dense", cfg.dense), ("pruned", cfg.pruned))]
    probes += [Probe(k, "onnxruntime", str(p)) for k, p in onnx_files.items()]
    memory = run_probes(probes, data.input_size, VERDICT_BATCH, cfg.threads)

    sizes = {}
    for k, m in (("dense", dense), ("pruned", pruned)):
        macs, params = model_cost(m, data.input_size)
        sizes[k] = {"macs": macs, "params": params, "fp32_weight_bytes": params * 4,
                    "checkpoint_bytes": Path(getattr(cfg, k)).stat().st_size,
                    "onnx_bytes": onnx_files[k].stat().st_size}
    if cfg.int8:
        sizes["int8"] = {**{k: sizes[int8_of][k] for k in ("macs", "params")},
                         "checkpoint_bytes": None, "onnx_bytes": onnx_files["int8"].stat().st_size}
    for s in sizes.values():
        s["macs_vs_dense"] = s["macs"] / sizes["dense"]["macs"]
        s["onnx_vs_dense"] = s["onnx_bytes"] / sizes["dense"]["onnx_bytes"]

    drop = acc["dense"]["top1"] - acc["pruned"]["top1"]
    return {
        "format": "amc-report", "version": 1, "model": cfg.model,
        "inputs": {"dense": cfg.dense, "pruned": cfg.pruned, "int8": cfg.int8,
                   "int8_of": int8_of, "data": cfg.data, "data_dir": cfg.data_dir,
                   "split": "test", "n_test": len(y), "classes": data.classes,
                   "input_size": list(data.input_size), "onnx_dir": str(onnx_dir)},
        "accuracy": {"models": {k: {m: v[m] for m in ("top1", "top5")} for k, v in acc.items()},
                     "diff": diffs},
        "per_class": {"flag_points": cfg.flag_points, "rows": rows,
                      "flagged": [r["class"] for r in rows if r["flagged"]]},
        "near_boundary": boundary,
        "latency": latency,
        "size": sizes,
        "memory": {"batch": VERDICT_BATCH, "threads": cfg.threads, "probes": memory},
        "onnx": {**{k: {f: r.as_dict()[f] for f in ("path", "exporter", "file_bytes",
                                                     "max_abs_diff", "rel_diff", "rtol",
                                                     "channels_ok")}
                    for k, r in exports.items()},
                 **({"int8": {f: int8_check[f] for f in ("path", "max_abs_diff", "channels_ok",
                                                        "file_bytes")}} if cfg.int8 else {})},
        "verdict": verdict(drop, latency["speedup"]["pytorch"][str(VERDICT_BATCH)],
                           cfg.max_drop, cfg.min_speedup),
        "config": asdict(cfg),
        "provenance": {"command": cfg.command, "started": started, "finished": now(),
                       "seconds": round(time.perf_counter() - t0, 1),
                       "git_commit": git_commit(), "versions": versions(), "cpu": _cpu()},
    }


def _cpu() -> str:
    from amc.utils.provenance import cpu_model

    return f"{cpu_model()} ({os.cpu_count()} cores)"
