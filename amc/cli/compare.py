"""``amc compare``: the resumable AMC-vs-baselines pipeline (options from CompareConfig)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from amc.cli.common import model_option
    from amc.config.args import add_dataclass_args
    from amc.report.compare_config import CompareConfig

    p = sub.add_parser("compare", help="AMC vs uniform, global, sensitivity and random, before "
                       "and after fine-tuning, over --seeds runs: table.md/csv (mean ± std), "
                       "pareto.png, ratios.png")
    add_dataclass_args(p, CompareConfig, skip=("budgets", "strategies"),
                       **model_option(CompareConfig.model))
    p.add_argument("--budget", dest="budgets", action="append", default=None,
                   help="a budget such as flops:0.5; repeat for several (default flops:0.5)")
    p.add_argument("--strategies", default="amc,uniform,global,sensitivity,random",
                   help="comma-separated strategies")
    p.set_defaults(func=cmd_compare)


def amc_policy(cfg, budget: str, run_dir: Path, blocks: Path | None = None) -> Path:
    """Run (or resume) the AMC search for one budget (``blocks``: its blocks policy, already
    made); returns its best policy file."""
    from amc.agents import SearchConfig, run_or_resume

    sweep = Path(cfg.out) / "sensitivity.json"
    sc = SearchConfig(**{**cfg.scoring_fields(), "threads": 1 if cfg.workers > 1 else cfg.threads},
                      budget=budget, episodes=cfg.episodes, warmup_episodes=cfg.warmup_episodes,
                      warm_start=cfg.warm_start, noise_min=cfg.noise_min,
                      drop_swap=cfg.drop_swap, pair_moves=cfg.pair_moves,
                      anchor_every=cfg.anchor_every,
                      rescore_top=cfg.rescore_top, time_limit=cfg.time_limit,
                      time_limit_finalists=cfg.time_limit_finalists,
                      finalists=cfg.finalists, blocks_finalists=cfg.blocks_finalists,
                      finalist_images=cfg.finalist_images,
                      finalist_epochs=cfg.finalist_epochs,
                      finalist_margin_se=cfg.finalist_margin_se,
                      workers=cfg.workers, envs_on=cfg.envs_on,
                      envs_per_worker=cfg.envs_per_worker,
                      out=str(run_dir),
                      sensitivity=str(sweep) if cfg.sweep_warm_start and sweep.is_file()
                      else None, blocks_policy=str(blocks) if blocks else None)
    run_or_resume(sc)  # a search made with other settings (or defaults) is done again
    return run_dir / "best_policy.json"


def ray_pool(workers: int):
    """A :data:`amc.report.compare.PoolFn` scoring policies on ``workers`` Ray actors."""

    def pool(scorer, fn):
        from amc.agents.parallel import ray_map  # the Ray side, imported only when asked for
        from amc.agents.ray_runtime import ray_session

        with ray_session(num_cpus=workers):
            return fn(ray_map(scorer, workers))

    return pool


def cmd_compare(args: argparse.Namespace) -> int:
    from amc.cli.common import model_name
    from amc.config.args import from_args
    from amc.report.compare import Comparison
    from amc.report.compare_config import CompareConfig

    model_name(args, fallback=CompareConfig.model)
    cfg = from_args(CompareConfig, args, budgets=tuple(args.budgets or ["flops:0.5"]),
                    strategies=tuple(s.strip() for s in args.strategies.split(",") if s))
    if cfg.reconstruct and not cfg.reconstruct_delivered:
        print("amc: note: the scores rank reconstructed networks, the delivered ones are plainly "
              "pruned: their order before fine-tuning can differ (--no-reconstruct scores "
              "them as delivered)")
    rows = Comparison(cfg, amc_policy if "amc" in cfg.strategies else None,
                      ray_pool(cfg.workers) if cfg.workers > 1 else None).run()
    print((Path(cfg.out) / "table.md").read_text())
    print(f"wrote {cfg.out}/table.md, table.csv, pareto.png, ratios.png, policies/")
    return 0 if rows else 1
