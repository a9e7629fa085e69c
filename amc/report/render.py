"""Write a compression report (the dict of :func:`amc.report.build.build_report`) as ``report.md``,
``report.json`` and three PNGs: per-class top-1, latency, top-1 by dense-margin decile."""

from __future__ import annotations

import json
import math
from pathlib import Path

from amc.utils.io import write_text

MODELS = ("dense", "pruned", "int8")
COLORS = {"dense": "#4c72b0", "pruned": "#dd8452", "int8": "#55a868"}


def _clean(obj: object) -> object:
    """JSON-safe copy: NaN/inf become None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.3f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _plots(rep: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if m in rep["accuracy"]["models"]]
    rows = rep["per_class"]["rows"]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.7 * len(rows) + 2), 4.5))
    w = 0.8 / len(models)
    for i, m in enumerate(models):
        ax.bar([j + (i - (len(models) - 1) / 2) * w for j in range(len(rows))],
               [r.get(m, float("nan")) for r in rows], w, label=m, color=COLORS[m])
    ax.set_xticks(range(len(rows)), [r["class"] + (" *" if r["flagged"] else "") for r in rows],
                  rotation=30, ha="right")
    for tick, r in zip(ax.get_xticklabels(), rows):
        tick.set_color("red" if r["flagged"] else "black")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"{rep['model']}: per-class top-1 (* red: lost > "
                 f"{rep['per_class']['flag_points']:g} points)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(out / "per_class.png", dpi=110)
    plt.close(fig)

    lat = rep["latency"]
    fig, axes = plt.subplots(1, len(lat["batches"]), figsize=(5 * len(lat["batches"]), 4))
    for ax, b in zip(axes, lat["batches"]):
        for gi, engine in enumerate(("pytorch", "onnxruntime")):
            rs = [r for m in MODELS for r in lat["rows"]
                  if r["batch"] == b and r["engine"] == engine and r["model"] == m]
            for i, r in enumerate(rs):
                x = gi + (i - (len(rs) - 1) / 2) * 0.25
                ax.bar(x, r["median_ms"], 0.25, color=COLORS[r["model"]],
                       label=r["model"] if gi == 1 else None,
                       yerr=[[r["median_ms"] - r["q1_ms"]], [r["q3_ms"] - r["median_ms"]]])
        sp = {e: lat["speedup"][e][str(b)] for e in ("pytorch", "onnxruntime")}
        ax.set_xticks([0, 1], [f"PyTorch\npruned speed-up {sp['pytorch']:.2f}x",
                               f"onnxruntime\npruned speed-up {sp['onnxruntime']:.2f}x"])
        ax.set_yscale("log")
        ax.set_ylabel("ms per batch (median, bars: IQR; log scale)")
        ax.set_title(f"batch {b}, {lat['threads']} threads")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    nb = rep["near_boundary"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m in models:
        d = nb["deciles"][m]
        ax.plot(range(1, len(d) + 1), d, "o-", color=COLORS[m], label=m)
    ax.set_xlabel("decile of the dense top-1 minus top-2 softmax margin (1 = smallest)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"{rep['model']}: accuracy by dense margin")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "margin.png", dpi=110)
    plt.close(fig)


def _markdown(rep: dict) -> str:
    inp, acc, v = rep["inputs"], rep["accuracy"], rep["verdict"]
    models = [m for m in MODELS if m in acc["models"]]
    label = {"dense": "dense", "pruned": "pruned",
             "int8": f"INT8 (onnxruntime, of the {inp['int8_of']} model)"}
    src = {"dense": inp["dense"], "pruned": inp["pruned"], "int8": inp["int8"]}
    lines = [f"# Compression report: {rep['model']}", "",
             f"Dense `{inp['dense']}` vs pruned `{inp['pruned']}`"
             + (f" and INT8 `{inp['int8']}`" if inp["int8"] else "")
             + f", on the `{inp['split']}` split of {inp['data']} ({inp['n_test']} images).", "",
             "## Verdict", "", f"**{'PASS' if v['pass'] else 'FAIL'}**"
             + ("" if v["pass"] else f": failed {', '.join(v['failed'])}"), "",
             "| check | value | rule | result |", "|---|---|---|---|"]
    for c in v["checks"]:
        lines.append(f"| {c['what']} | {c['value']:.3f} | {c['rule']} {c['limit']:g} | "
                     f"{'pass' if c['pass'] else '**FAIL**'} |")
    lines += ["", f"## Accuracy on test ({inp['n_test']} images)", "",
              "| model | top-1 % | top-5 % | Δ top-1 vs dense | Δ top-5 vs dense |",
              "|---|---|---|---|---|"]
    for m in models:
        a, d = acc["models"][m], acc["diff"].get(f"{m}_vs_dense", {})
        lines.append(f"| {label[m]} | {_pct(a['top1'])} | {_pct(a['top5'])} | "
                     f"{_pct(d.get('top1'), True) if d else '-'} | "
                     f"{_pct(d.get('top5'), True) if d else '-'} |")
    pc = rep["per_class"]
    lines += ["", "## Per-class top-1", "",
              f"Classes whose top-1 dropped by more than {pc['flag_points']:g} points (dense → "
              f"pruned) are flagged: **{', '.join(pc['flagged']) or 'none'}**.", "",
              "| class | dense % | pruned % | Δ | " + ("INT8 % | " if "int8" in models else "")
              + "flag |", "|---|---|---|---|" + ("---|" if "int8" in models else "") + "---|"]
    for r in pc["rows"]:
        lines.append(f"| {r['class']} | {_pct(r['dense'])} | {_pct(r['pruned'])} | "
                     f"{_pct(r['diff'], True)} | "
                     + (f"{_pct(r.get('int8'))} | " if "int8" in models else "")
                     + ("**lost > {:g}**".format(pc["flag_points"]) if r["flagged"] else "")
                     + " |")
    lines += ["", "![per-class top-1](per_class.png)", ""]
    nb = rep["near_boundary"]
    lines += ["## Near-boundary slice", "",
              f"The {nb['fraction']:.0%} of test images ({nb['n']} of {nb['n_total']}) with the "
              "smallest dense margin (top-1 minus top-2 softmax probability; largest margin in "
              f"the slice {nb['margin_max']:.4f}).", "",
              "| model | top-1 % on the slice | top-1 % on the rest | agrees with dense on "
              "the slice % |", "|---|---|---|---|"]
    for m in models:
        s = nb["models"][m]
        lines.append(f"| {label[m]} | {_pct(s['top1'])} | {_pct(s['top1_rest'])} | "
                     f"{_pct(s['agree_with_dense'])} |")
    lines += ["", "![top-1 by margin decile](margin.png)", ""]
    lat = rep["latency"]
    load = lat["load_avg_1min"]
    lines += ["## Latency", "",
              f"{lat['threads']} intra-op threads in both engines, random input, median and IQR "
              f"of {lat['rows'][0]['runs']} timed runs per cell; the models of one engine are "
              "timed interleaved round by round, the engines one after the other; speed-up = dense "
              f"median / pruned median. 1-min load average {load['start']:.2f} at the start, "
              f"{load['end']:.2f} at the end, on {load['cpus']} CPUs"
              + (" (the machine was busy: times are inflated, multi-threaded PyTorch most, "
                 "whose threads must meet at every layer; the fastest run is given as min)."
                 if max(load["start"], load["end"]) > load["cpus"] * 0.75 else "."), "",
              "| engine | batch | " + " | ".join(f"{m} ms (IQR; min)" for m in models)
              + " | pruned speed-up |" + (" INT8 speed-up vs dense |" if "int8" in models
                                          else ""),
              "|---|---|" + "---|" * len(models) + "---|" + ("---|" if "int8" in models
                                                              else "")]
    cell = {(r["engine"], r["model"], r["batch"]): r for r in lat["rows"]}
    for e in ("pytorch", "onnxruntime"):
        for b in lat["batches"]:
            ms = [f"{c['median_ms']:.2f} ({c['iqr_ms']:.2f}; {c['min_ms']:.2f})"
                  if (c := cell.get((e, m, b))) else "-" for m in models]
            row = f"| {e} | {b} | " + " | ".join(ms) + f" | {lat['speedup'][e][str(b)]:.2f}x |"
            if "int8" in models:
                row += f" {lat['int8_speedup'][str(b)]:.2f}x |" if e == "onnxruntime" else " - |"
            lines.append(row)
    lines += ["", "![latency](latency.png)", ""]
    mem, size = rep["memory"], rep["size"]
    lines += ["## Size and memory", "",
              f"Peak resident memory (`ru_maxrss`) of a fresh process that loads the model and "
              f"runs one batch of {mem['batch']} ({mem['threads']} threads); in brackets the "
              "increase over the same process after its imports, before loading the model.", "",
              "| model | file | MACs / image | params | checkpoint | ONNX | peak RSS PyTorch | "
              "peak RSS onnxruntime |", "|---|---|---|---|---|---|---|---|"]
    for m in models:
        s = size[m]
        rss = [f"{p['peak_mb']:.0f} MB (+{p['delta_mb']:.1f})" if (p := mem["probes"].get(
            f"{e}/{m}")) else "-" for e in ("pytorch", "onnxruntime")]
        lines.append(f"| {label[m]} | `{Path(src[m]).name}` | {s['macs'] / 1e6:.2f}M "
                     f"({s['macs_vs_dense']:.1%}) | {s['params'] / 1e6:.4f}M | "
                     f"{_bytes(s['checkpoint_bytes'])} | {_bytes(s['onnx_bytes'])} "
                     f"({s['onnx_vs_dense']:.1%}) | {rss[0]} | {rss[1]} |")
    base = {e: sorted({p["baseline_mb"] for k, p in mem["probes"].items() if k.startswith(e)})
            for e in ("pytorch", "onnxruntime")}
    lines += ["", "Baselines after imports: PyTorch "
              + ", ".join(f"{b:.0f}" for b in base["pytorch"]) + " MB; onnxruntime "
              + ", ".join(f"{b:.0f}" for b in base["onnxruntime"]) + " MB.", "",
              "## ONNX exports", "", "| model | file | exporter | max abs diff | channels |",
              "|---|---|---|---|---|"]
    for m, o in rep["onnx"].items():
        lines.append(f"| {m} | `{o['path']}` | {o.get('exporter', 'given')} | "
                     f"{o['max_abs_diff']:.2g} | {'ok' if o['channels_ok'] else 'DIFFER'} |")
    pv = rep["provenance"]
    if "int8" in rep["onnx"]:
        lines += ["", "The INT8 file's max abs diff is to the PyTorch model it was made from "
                  "(informational, not held to a tolerance)."]
    lines += ["", "## Provenance", "",
              f"- command: `{pv['command']}`", f"- started {pv['started']}, finished "
              f"{pv['finished']} ({pv['seconds']:.0f} s)", f"- git commit: {pv['git_commit']}",
              f"- CPU: {pv['cpu']}", "- versions: " + ", ".join(
                  f"{k} {v}" for k, v in pv["versions"].items()), ""]
    return "\n".join(lines)


def write_report(rep: dict, out: str | Path) -> list[Path]:
    """Write the PNGs, ``report.json`` and (last) ``report.md`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _plots(rep, out)
    write_text(out / "report.json", json.dumps(_clean(rep), indent=2, default=str) + "\n")
    write_text(out / "report.md", _markdown(rep))
    return [out / n for n in ("report.md", "report.json", "per_class.png", "latency.png",
                              "margin.png")]
