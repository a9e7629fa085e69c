"""``amc search``: the AMC reinforcement-learning search (options derive from SearchConfig)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from amc.cli.common import model_option
    from amc.config.args import add_dataclass_args

    p = sub.add_parser("search", help="AMC search: DDPG learns per-unit pruning ratios")
    add_dataclass_args(p, _config_cls(), **model_option(_config_cls().model))
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the killed search in DIR with the settings of its "
                        "config.json (no other option with it)")
    p.set_defaults(func=cmd_search)


def _config_cls():
    from amc.agents.config import SearchConfig  # a plain dataclass: no SB3/Ray import

    return SearchConfig


def cmd_search(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace
    from pathlib import Path

    from amc.agents import run_search
    from amc.cli.common import model_name, refuse_options_with_resume
    from amc.config.args import from_args, load_run_config

    if args.resume:  # the folder named here (config.json may hold a path relative elsewhere)
        refuse_options_with_resume(args, "search")
        cfg = replace(load_run_config(_config_cls(), Path(args.resume), "search"),
                      out=args.resume)
        resume = True
    else:
        model_name(args, fallback=_config_cls().model)
        cfg = from_args(_config_cls(), args)
        resume = False
    done = Path(cfg.out) / "summary.json"
    s = json.loads(done.read_text()) if resume and done.is_file() else None
    if s is not None and not s.get("stopped_by_time_limit") and s["episodes"] >= cfg.episodes:
        print(f"{cfg.out} is finished ({s['episodes']} episodes): nothing to resume")
    else:  # a run, or the rest of a killed or time-limited one
        s = run_search(cfg, resume=resume)
    lines = ", ".join(f"{n} {m['val_top1']:.2f}%" for n, m in s["cheap"].items())
    r = s.get("rescore")
    # the search's own best against the cheap policies, all scored on the search's images
    # (after rescoring, the summary's best is the pick: its line follows)
    top1, episode = ((r["search_best_val_top1"], r["search_best_episode"])
                     if r and "search_best_val_top1" in r
                     else (s["best_val_top1"], s["best_episode"]))
    on = f" on its {r['search_images']} val images" if r and "search_images" in r else ""
    print(f"AMC search on {cfg.model} ({cfg.budget}, reward {cfg.reward}): {s['episodes']} "
          f"episodes, best val top-1 {top1:.2f}% (episode {episode}) vs "
          f"{lines or 'no cheap policy within the budget'}{on}; "
          f"{s['seconds_per_episode']:.2f} s/episode")
    if "best_latency_ratio" in s:
        print(f"best policy: latency {s['best_latency_ratio']:.3f} of dense predicted by the "
              f"latency table, MACs {s['best_macs_ratio']:.3f} of dense")
    if r:
        print(f"best picked on all {r['images']} val images among the search's "
              f"{r['candidates']} best: episode {r['chosen_episode']} "
              f"({r['chosen_val_top1_all']:.2f}%; the search's best, episode "
              f"{r['search_best_episode']}: {r['search_best_val_top1_all']:.2f}%)")
    print(f"run directory: {cfg.out} (best_policy.json, episodes.csv, learning_curve.png)")
    return 0
