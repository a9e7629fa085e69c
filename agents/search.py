"""``run_search``: the AMC search loop with a run directory and resume."""

from __future__ import annotations

import json
import logging
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3 import DDPG
from stable_baselines3.common.callbacks import CallbackList, StopTrainingOnMaxEpisodes
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from amc.config.args import changed_settings, check_counts
from amc.cost.timing import num_threads
from amc.envs import ActionMap, AMCPruningEnv, Outcome, reward_fn
from amc.prune.budget import Budget, fill_vectors, resource_fn
from amc.prune.latency_table import LatencySpec, reuse_note
from amc.prune.policy import load_policy, make_policy
from amc.prune.rescore import RewardAt
from amc.prune.scoring import Scorer, build_scorer
from amc.utils.errors import AmcError
from amc.utils.io import check_out_dir, check_writable, made_dir, remove_entries, write_json
from amc.utils.provenance import git_commit, now, versions

from .config import SearchConfig
from .ddpg import attach_noise, build_agent, make_noise
from .episode_buffer import EpisodeReplayBuffer
from .finalists import CANDIDATES_FILE, blocks_by_finetune, finalists_estimate, pick_by_finetune
from .latency_check import check_seconds, measure_pick
from .monitor import (
    SearchMonitor,
    episode_columns,
    find_checkpoint,
    read_rows,
    restore_best,
    write_rows,
)
from .rescore import pick_best, rest_images
from .summary import best_fields, summarize
from .time_limit import RescoreEstimate, StopAtWallTime, warmup_notice
from .updates import EpisodeUpdates, OverlapUpdates, overlaps
from .warm_start import CHEAP, WarmStart, cheap_policies, demo_actions, handed_over
from .warm_start import MODES as WARM_MODES
from .wrappers import RewardBaseline

log = logging.getLogger("amc")

if TYPE_CHECKING:
    from .parallel import ActorScorer  # imports Ray: only where workers are asked for

RUN_FILES = ("config.json", "run.json", "episodes.csv", "best_policy.json",
             *(f"{name}_policy.json" for name in CHEAP), "warm_start.json",
             "summary.json", "learning_curve.png", "ckpt", "ckpt.old", "ckpt.tmp", "tb",
             "ray_logs", "search_best_policy.json", "rescore.json", "finalists.json",
             "blocks_finalists.json", CANDIDATES_FILE)
"""What a search writes into its run directory (anything else there is not amc's)."""


def _outcome(scorer: Scorer, cfg: SearchConfig, ratios: list[float], top1: float) -> Outcome:
    budget = cfg.parsed_budget()
    pm = scorer.pm
    macs, params = pm.cost(ratios)
    lat = 0.0
    if cfg.reward == "latency":
        lat = LatencySpec.from_config(cfg).table(pm).predict(ratios)
    return Outcome(top1, macs, params, resource_fn(pm, budget)(ratios), budget.fraction, lat,
                   macs / pm.dense_macs)


def outcome(scorer: Scorer, cfg: SearchConfig, ratios: list[float],
            top1: float | None = None) -> dict[str, Any]:
    """Score a policy as an episode would (val top-1, reward, achieved ratios); ``top1``:
    its val top-1 when already known (then only the reward is computed)."""
    top1 = scorer(ratios) if top1 is None else top1
    o = _outcome(scorer, cfg, ratios, top1)
    return {"val_top1": top1, "reward": reward_fn(cfg.reward, cfg.lambda_size,
                                                   cfg.capacity_weight)(o),
            "macs_ratio": o.macs_fraction,
            "params_ratio": o.params / scorer.pm.dense_params}


def _reward(fn: Callable[[Outcome], float], o: Outcome, top1: float) -> float:
    return float(fn(replace(o, top1=top1)))


def _reward_at(scorer: Scorer, cfg: SearchConfig) -> RewardAt:
    """The search's reward of ratios as a function of their val top-1 (holding the ratios'
    costs, not the network: it may travel to a scoring worker)."""
    fn = reward_fn(cfg.reward, cfg.lambda_size, cfg.capacity_weight)
    return lambda ratios: partial(_reward, fn, _outcome(scorer, cfg, ratios, 0.0))


def cheap_lines(scorer: Scorer, cfg: SearchConfig, run_dir: Path,
                given: dict[str, list[float]] | None = None
                ) -> dict[str, tuple[list[float], dict[str, float]]]:
    """The cheap policies (uniform, global, sensitivity given a sweep, blocks) scored once and
    kept as ``<name>_policy.json``: the lines to beat and the warm start's demonstrations
    (the blocks candidate the search's own reward ranks first, where it makes it).
    One already in ``run_dir`` (a resumed search's) or ``given`` (ratios by name: the
    ``--blocks-policy`` handed over) is not made again.

    Returns:
        name -> (ratios, {"val_top1", "reward"}).
    """
    pm = scorer.pm
    out = {}
    made = {n: load_policy(run_dir / f"{n}_policy.json") for n in CHEAP
            if (run_dir / f"{n}_policy.json").is_file()}
    known = {**(given or {}), **{k: p.ratios for k, p in made.items()}}
    scored: list[tuple[list[float], float]] = []
    reward_at = _reward_at(scorer, cfg)
    policies = cheap_policies(scorer, cfg.parsed_budget(), cfg.max_ratio, cfg.sensitivity,
                              known, scored, cfg.fill_vectors,
                              lambda ratios, top1: reward_at(ratios)(top1))
    if scored:  # the finalists' pool takes them from here instead of scoring them again
        write_json(run_dir / CANDIDATES_FILE, [{"ratios": r, "val_top1": t} for r, t in scored])
    for name, ratios in policies.items():
        path = run_dir / f"{name}_policy.json"
        if name in made:
            out[name] = (made[name].ratios, made[name].metrics)
            continue
        # as a user gets it (`amc baseline` fills its vectors too): the line to beat
        ratios = pm.canonical(fill_vectors(pm, cfg.parsed_budget(), ratios, cfg.fill_vectors))
        o = outcome(scorer, cfg, ratios)
        metrics = {"val_top1": o["val_top1"], "reward": o["reward"]}
        make_policy(pm, ratios, cfg.model, cfg.parsed_budget(), name, cfg.seed, cfg.max_ratio,
                    metrics).save(path)
        out[name] = (ratios, metrics)
    return out


def observations_of(scorer: Scorer, cfg: SearchConfig):
    """A function from a policy's ratios to the observations an env shows for it."""
    env = AMCPruningEnv(scorer, **{**cfg.env_kwargs(), "reward": "err"})

    def obs(ratios: list[float]) -> np.ndarray:
        rows = [env.reset()[0]]
        for a in env.actions.replay(ratios)[:-1]:  # the last step would score the network
            rows.append(env.step(np.array([a], np.float32))[0])
        return np.stack(rows)

    return obs


def search_ray(cfg: SearchConfig, log_dir: Path | None = None):
    """The Ray session of a search with workers: ``cfg.address``'s cluster, or a local
    instance with each worker's CPUs (at least 2); too few CPUs or GPUs fail in one line."""
    from .ray_runtime import ray_session

    local_cpus = max(2, math.ceil(cfg.workers * cfg.cpus_per_worker))
    return ray_session(num_cpus=None if cfg.address else local_cpus, address=cfg.address,
                       log_dir=log_dir, verbose=cfg.verbose, workers=cfg.workers,
                       cpus_per_worker=cfg.cpus_per_worker, gpus_per_worker=cfg.gpus_per_worker)


def actor_scorer(cfg: SearchConfig, scorer: Scorer) -> ActorScorer:
    """``cfg.workers`` Ray actors scoring with ``scorer``'s network and data (each on
    ``cfg.device``, which ``auto`` resolves in the actor); Ray must be initialised."""
    from amc.prune.scoring import ScorerParts

    from .parallel import ActorScorer

    return ActorScorer(replace(ScorerParts.of(scorer), device=cfg.device), scorer.pm,
                       cfg.workers, cfg.threads or 1, cfg.cpus_per_worker, cfg.gpus_per_worker,
                       cfg.max_restarts)


def make_venv(cfg: SearchConfig, scorer: Scorer):
    """One in-process env, or with ``cfg.workers`` > 1 envs whose scoring runs on
    ``cfg.workers`` Ray actors (each scoring on ``cfg.device``, which ``auto`` resolves in
    the actor: a GPU when Ray gave it one): ``envs_per_worker`` envs per worker stepping on
    the driver (``envs_on`` driver), or one env in each actor (``envs_on`` workers)."""
    if not cfg.workers or cfg.workers < 2:
        return DummyVecEnv([lambda: AMCPruningEnv(scorer, **cfg.env_kwargs())])
    if cfg.envs_on == "workers":
        from amc.prune.scoring import ScorerParts

        from .ray_vec_env import PruningEnvFactory, RayVecEnv

        parts = replace(ScorerParts.of(scorer), device=cfg.device)
        return RayVecEnv(PruningEnvFactory(parts, cfg.env_kwargs()), cfg.workers, cfg.seed,
                         cfg.threads or 1, cfg.cpus_per_worker, cfg.gpus_per_worker,
                         cfg.max_restarts)
    from .pooled_vec_env import PooledVecEnv

    actors = actor_scorer(cfg, scorer)
    return PooledVecEnv([lambda: AMCPruningEnv(actors, **cfg.env_kwargs())
                         for _ in range(cfg.workers * cfg.envs_per_worker)], cfg.seed,
                        actors=actors)


def search(config: SearchConfig | None = None, *, resume: bool = False,
           **fields: Any) -> dict[str, Any]:
    """Run an AMC search from Python (``amc.search``): a :class:`SearchConfig`, its fields as
    keywords, or both (the keywords win). Returns the summary; the best policy is
    ``<out>/best_policy.json``.

    Example:
        ``amc.search(model="digits_cnn", checkpoint="dense.pt", budget="flops:0.5",
        episodes=50, out="runs/s")``
    """
    cfg = replace(config, **fields) if config is not None else SearchConfig(**fields)
    return run_search(cfg, resume=resume)


def run_search(cfg: SearchConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) an AMC search; returns the summary written to ``summary.json``.

    With ``cfg.workers`` > 1 the episodes run on Ray actors (a local Ray bound to 127.0.0.1,
    or the cluster at ``cfg.address``), shut down at the end.
    """
    check_counts(cfg)  # bad settings fail before anything is written
    Budget.parse(cfg.budget)
    reward_fn(cfg.reward)
    if cfg.warm_start not in WARM_MODES:
        raise AmcError(f"unknown --warm-start {cfg.warm_start!r}; use cheap or random")
    if cfg.sensitivity and not Path(cfg.sensitivity).is_file():
        raise AmcError(f"--sensitivity {cfg.sensitivity} does not exist; pass the "
                       "sensitivity.json that amc compare wrote")
    if cfg.blocks_policy and not Path(cfg.blocks_policy).is_file():
        raise AmcError(f"--blocks-policy {cfg.blocks_policy} does not exist; pass a policy "
                       "file of amc baseline --strategy blocks")
    run_dir = Path(cfg.out)
    check_writable(run_dir)
    if not resume:
        if ((run_dir / "episodes.csv").exists() or find_checkpoint(run_dir)) and not cfg.force:
            raise AmcError(f"{run_dir} already holds a search; pass --resume {run_dir} to "
                           "continue it, --force to start over, or choose another --out")
        check_out_dir(run_dir, RUN_FILES, cfg.force)
    # its threads for the search only: a caller (amc compare) goes on with its own after it
    # a failed start removes the folder it made; one that recorded episodes stays, to resume
    with num_threads(cfg.threads or 1), made_dir(run_dir,
                                                 keep=lambda d: (d / "episodes.csv").is_file()):
        if cfg.workers and cfg.workers > 1:
            with search_ray(cfg, run_dir):
                return _run(cfg, run_dir, resume)
        return _run(cfg, run_dir, resume)


RUNTIME_SETTINGS = ("force", "out", "workers", "address", "cpus_per_worker", "gpus_per_worker",
                    "threads", "device", "verbose", "checkpoint_every", "max_restarts",
                    "envs_on")
"""Settings that change how a search runs, not what it finds: a search made with other
values of these is resumed as it is."""

FINAL_SETTINGS = ("rescore_top", "finalists", "finalist_images", "finalist_epochs",
                  "finalist_margin_se")
"""Settings applied after the episodes (how the best policy is picked): a finished search
made with other values of these is finished again, its episodes kept."""


def run_or_resume(cfg: SearchConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """The search in ``cfg.out`` made with ``cfg``'s settings: resumed (or, when finished, its
    summary read back) if the folder holds one; searched afresh, with a one-line notice
    through ``say``, if the folder holds one made with other settings or by an amc that
    predates one of them (what the callers that cache searches use: a changed setting or
    default must not silently reuse an old search).
    """
    check_counts(cfg)
    run_dir = Path(cfg.out)
    if not (run_dir / "config.json").is_file():
        return run_search(cfg)
    changed = changed_settings(cfg, run_dir, ignore=RUNTIME_SETTINGS)
    finished = (run_dir / "summary.json").is_file()
    final = set(FINAL_SETTINGS)
    if cfg.blocks_finalists >= 2:  # the finalists' recipe also picked the warm start's drops
        final -= {"finalist_images", "finalist_epochs"}
    if changed and not (finished and set(changed) <= final):
        say(f"{run_dir} was searched with other settings ({', '.join(changed)}): "
            "searching again")
        return run_search(replace(cfg, force=True))
    if changed:  # only how the finished search's best is picked: pick it again
        say(f"{run_dir}: picking its best again ({', '.join(changed)} changed)")
        return refinish(cfg)
    if finished:
        return json.loads((run_dir / "summary.json").read_text())
    return run_search(cfg, resume=True)


def refinish(cfg: SearchConfig) -> dict[str, Any]:
    """Pick the best policy of the finished search in ``cfg.out`` again with ``cfg``'s
    :data:`FINAL_SETTINGS` (its episodes are kept); updates its best policy, summary and
    ``config.json``. With ``cfg.workers`` > 1 the candidates are scored on that many Ray
    actors, as at the end of the search (so ``rescore_seconds`` times the same work)."""
    with num_threads(cfg.threads or 1):
        return _refinish(cfg, Path(cfg.out))


def _refinish(cfg: SearchConfig, run_dir: Path) -> dict[str, Any]:
    scorer = build_scorer(**cfg.scorer_kwargs())
    summary = json.loads((run_dir / "summary.json").read_text())
    reward_at = _reward_at(scorer, cfg)
    if cfg.workers and cfg.workers > 1:
        with search_ray(cfg):
            actors = actor_scorer(cfg, scorer)
            try:
                picked = pick_best(cfg, scorer, run_dir, reward_at, actors)
            finally:
                actors.close()
    else:
        picked = pick_best(cfg, scorer, run_dir, reward_at)
    picked.update(pick_by_finetune(cfg, scorer, run_dir, reward_at))
    picked.update(measure_pick(cfg, scorer, run_dir))
    summary.update(picked, **best_fields(run_dir))
    write_json(run_dir / "summary.json", summary)
    stored = json.loads((run_dir / "config.json").read_text())
    write_json(run_dir / "config.json", {**stored, **{k: getattr(cfg, k)
                                                      for k in FINAL_SETTINGS}})
    return summary


def _check_buffer(ckpt: Path, run_dir: Path) -> None:
    """Refuse a checkpoint whose replay buffer this amc cannot continue (before loading)."""
    with open(ckpt / "replay.pkl", "rb") as f:
        buf = pickle.load(f)
    if not isinstance(buf, EpisodeReplayBuffer):
        raise AmcError(f"{run_dir} was checkpointed by an earlier amc (its replay buffer "
                       "predates whole-episode storage); start it over (--force, or remove "
                       "the folder) or choose another --out")


def _run(cfg: SearchConfig, run_dir: Path, resume: bool) -> dict[str, Any]:
    scorer = build_scorer(**cfg.scorer_kwargs())
    pm = scorer.pm
    n_units = len(pm.units)
    given = ({"blocks": handed_over(cfg.blocks_policy, cfg.model, cfg.budget,
                                    [u.name for u in pm.units])}
             if cfg.blocks_policy else None)  # checked before a search is cleared
    if not resume:  # the inputs are good: clear a search replaced by --force (or a failed
        # start's leftovers; ray_logs is this session's) and start
        remove_entries(run_dir, [n for n in RUN_FILES if n != "ray_logs"])
        write_json(run_dir / "config.json", replace(cfg, force=False).as_dict())
        write_json(run_dir / "run.json", {"seed": cfg.seed, "git_commit": git_commit(),
                                          "versions": versions(), "started": now()})
    t_cheap = time.perf_counter()
    lines = cheap_lines(scorer, cfg, run_dir, given)
    if cfg.parsed_budget().kind == "latency" or cfg.reward == "latency":
        note = reuse_note(LatencySpec.from_config(cfg).table(pm))  # timed by now, or read
        if note:
            log.warning(note)
    cheap_s = time.perf_counter() - t_cheap  # within --time-limit: part of the session
    reward_at = _reward_at(scorer, cfg)
    # --blocks-finalists: the blocks demonstration picked by a short fine-tune (outside
    # --time-limit unless --time-limit-finalists)
    t_blocks = time.perf_counter()
    blocks_ft = blocks_by_finetune(cfg, scorer, run_dir, reward_at)
    blocks_s = time.perf_counter() - t_blocks  # this session's
    # --time-limit counts from the cheap policies' start (building the envs and the agent
    # inside), the blocks finalists' fine-tunes left out unless --time-limit-finalists
    origin = t_cheap + (0.0 if cfg.time_limit_finalists else blocks_s)
    if blocks_ft is not None:
        lines["blocks"] = (blocks_ft["ratios"], blocks_ft["metrics"])
    demos = None
    amap = ActionMap.of(scorer.pm, cfg.max_ratio)
    twins = pm.twins()
    if cfg.episodes <= cfg.warmup_episodes:
        log.warning(f"amc: note: all {cfg.episodes} episodes are warm-up (--warmup-episodes "
                    f"{cfg.warmup_episodes}): the agent never chooses a policy of its own, so "
                    "the search returns the best warm-up episode; pass more --episodes or "
                    "fewer --warmup-episodes")
    if cfg.pair_moves > 0 and not twins:
        log.warning("amc: note: no two of these units have the same shape, so --pair-moves "
                    "makes no pair moves")
    if cfg.drop_swap > 0 and not amap.droppable:
        log.warning("amc: note: no unit here may drop its block (--drop-blocks), so "
                    "--drop-swap swaps none")
    if cfg.warm_start == "cheap":  # best first
        ranked = dict(sorted(lines.items(), key=lambda kv: -kv[1][1]["reward"]))
        demos = demo_actions({k: v[0] for k, v in ranked.items()}, amap)

    # VecMonitor (raw rewards: rollout/ep_rew_mean in TensorBoard) under the baseline; Ray
    # workers (or the in-process env, given a core or a GPU) score while the agent updates
    envs = make_venv(cfg, scorer)
    overlap = (OverlapUpdates(envs, n_units)
               if overlaps(cfg.overlap_updates, cfg.workers, scorer.device) else None)
    venv = RewardBaseline(VecMonitor(overlap or envs), cfg.baseline_alpha)
    updates = EpisodeUpdates(overlap)
    tb = str(run_dir / "tb")
    ckpt = find_checkpoint(run_dir) if resume else None
    done, best = 0, None
    if ckpt is not None:
        _check_buffer(ckpt, run_dir)
        state = json.loads((ckpt / "state.json").read_text())
        done, best = int(state["episodes_done"]), state["best_reward"]
        model = DDPG.load(ckpt / "agent.zip", env=venv, device="cpu", tensorboard_log=tb)
        model.load_replay_buffer(ckpt / "replay.pkl")
        model.replay_buffer.drop_pending()  # the envs restart at the first unit
        updates.load_state(state.get("updates", {}))
        noise = make_noise(cfg, venv.num_envs, demos, amap, twins)
        noise.load_state(state["noise"])
        venv.load_state(state["baseline"])
        rows = read_rows(run_dir / "episodes.csv")[:done]
        write_rows(run_dir / "episodes.csv", episode_columns(pm), rows)
        best = restore_best(ckpt, run_dir, done, best)
    else:
        if resume:
            for f in ("episodes.csv", "best_policy.json"):
                (run_dir / f).unlink(missing_ok=True)
        model, noise = build_agent(cfg, venv, n_units, tensorboard_log=tb, demos=demos,
                                   actions=amap, twins=twins)
    follow = attach_noise(model, noise)
    callbacks = [follow, updates]
    warm = None
    if demos:
        best_known = None
        if best is not None and (run_dir / "best_policy.json").is_file():
            best_known = (float(best), load_policy(run_dir / "best_policy.json").ratios)
        warm = WarmStart(noise, observations_of(scorer, cfg), amap, best_known,
                         anchor_every=cfg.anchor_every, solve=cfg.anchor_solve,
                         defer=overlap.defer if overlap else None,
                         record=lambda d: write_json(run_dir / "warm_start.json", d))
        callbacks.append(warm)
    monitor = SearchMonitor(cfg, run_dir, pm, done, best,
                            {"noise": noise, "baseline": venv, "updates": updates})
    t0 = time.perf_counter()
    remaining = cfg.episodes - done
    remote = getattr(envs, "remote_scorer", None)  # the rescoring's workers, if any
    timer = StopAtWallTime(None)
    if cfg.time_limit is not None:
        reserves = [RescoreEstimate(cfg.rescore_top, rest_images(cfg),
                                    remote.workers if remote is not None else 1)]
        if cfg.time_limit_finalists:
            reserves.append(finalists_estimate(cfg, scorer, run_dir, reward_at, blocks_ft,
                                               venv.num_envs))
        timer = StopAtWallTime(cfg.time_limit, *reserves, since=origin, fits=warm)
    if remaining > 0:
        # stop by episode count (SB3's callback; the monitor records exactly `remaining`)
        stop = StopTrainingOnMaxEpisodes(max_episodes=-(-remaining // venv.num_envs))
        model.learn(total_timesteps=2 * (remaining + venv.num_envs) * n_units,
                    callback=CallbackList([*callbacks, monitor, stop, timer]),
                    reset_num_timesteps=ckpt is None, tb_log_name="ddpg", log_interval=10)
        monitor.save_checkpoint()
    if timer.stopped:
        fine = cfg.time_limit_finalists and (cfg.finalists >= 2 or cfg.blocks_finalists >= 2)
        note = warmup_notice(monitor.done, cfg.warmup_episodes, cfg.time_limit,
                             timer.before, timer.reserved, fine)
        if note:
            log.warning(note)
    restarts = getattr(envs, "restarts", 0)
    seconds = time.perf_counter() - t0
    try:  # the rescoring runs on the search's Ray actors, if any, before they go
        picked = pick_best(cfg, scorer, run_dir, reward_at, remote)
    finally:
        venv.close()
    t_rescored = time.perf_counter()
    deadline = (origin + cfg.time_limit - check_seconds(cfg, scorer)
                if cfg.time_limit is not None and cfg.time_limit_finalists else None)
    picked.update(pick_by_finetune(cfg, scorer, run_dir, reward_at,  # on the freed cores
                                   deadline=deadline))
    picked.update(measure_pick(cfg, scorer, run_dir))
    end = time.perf_counter()
    counted = None  # what --time-limit bounds: from its origin to the rescoring's end (or all)
    if cfg.time_limit is not None:
        counted = (end if cfg.time_limit_finalists else t_rescored) - origin
    return summarize(cfg, run_dir, {k: v[1] for k, v in lines.items()}, seconds, restarts,
                     {"agent_updates_this_run": updates.made,
                      "agent_update_seconds": updates.seconds, "cheap_seconds": cheap_s,
                      "stopped_by_time_limit": timer.stopped,
                      "time_limit_reserved_seconds": timer.reserved,
                      "time_limit_counted_seconds": counted,
                      "session_seconds": end - t_cheap,
                      "drop_swaps": noise.swaps,
                      "pair_moves": noise.pair_moves,
                      "blocks_finalist": blocks_ft["name"] if blocks_ft else None,
                      "blocks_finalist_seconds": blocks_ft["seconds"] if blocks_ft else 0.0,
                      "update_rounds_overlapped": overlap.overlapped if overlap else 0,
                      "score_precision": scorer.precision.name, **picked})
