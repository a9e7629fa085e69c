"""Policies picked by a short fine-tune: ``--finalists`` and ``--blocks-finalists``.

``--finalists``: after ``--rescore-top`` has picked the search's best, :func:`pick_by_finetune`
fine-tunes it and ``finalists - 1`` other policies (:func:`amc.train.finalists.pick_finalists`:
the best of each other set of dropped blocks first; with droppable blocks the ``blocks``
strategy's candidates join the search's episodes) and keeps the one best on all of ``val``
after it when it leads the search's pick by more than ``--finalist-margin-se`` standard errors
(``finalists.json``; the policy picked before stays as ``search_best_policy.json``).

``--blocks-finalists``: before the episodes, :func:`blocks_by_finetune` fine-tunes the
``blocks`` strategy's best candidates by score (one per number of dropped blocks) and the
warm start demonstrates the one best on ``val`` after it (``blocks_finalists.json``): a search
seldom leaves the blocks its warm start dropped.

Both fine-tune as ``amc finetune`` does (the plainly pruned, BN-recalibrated network,
distilled from the dense model, ``--finalist-images`` images for ``--finalist-epochs``), in
the driver on the cores the search's workers hold, outside ``--time-limit`` (inside it with
``--time-limit-finalists``).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from amc.config.blocks import PrunedOptimConfig
from amc.data.datasets import load_dataset, train_view
from amc.models.registry import create_model
from amc.prune.baselines import blocks_candidates
from amc.prune.depth import DROP
from amc.prune.policy import load_policy, make_policy
from amc.prune.rescore import RewardAt
from amc.prune.scoring import Scorer
from amc.train.finalists import Finalist, finetune_finalists, pick_finalists, ratios_key
from amc.train.loop import TrainConfig
from amc.utils.io import write_json, write_text

from .config import SearchConfig
from .latency_check import check_seconds
from .monitor import read_rows
from .rescore import candidates
from .time_limit import PICK_FINETUNE_FACTOR, FinalistEstimate

POOL = 50
"""The search's best distinct episodes the finalists are chosen from."""

BLOCKS_FILE = "blocks_finalists.json"
"""``--blocks-finalists``' record in the run directory (its pick, and every blocks candidate
with its score, which ``--finalists`` reuses)."""

CANDIDATES_FILE = "blocks_candidates.json"
"""The blocks strategy's candidates with their val top-1, written where the search made its
blocks policy itself (not handed over): the finalists' pool reads them instead of scoring
them again."""


def handed_candidates(cfg: SearchConfig, units: int) -> list[tuple[list[float], float]] | None:
    """The blocks candidates with their val top-1 that ``cfg.blocks_policy`` (``amc compare``'s
    blocks policy for this search) records, when they were scored as this search scores (same
    :meth:`~amc.config.blocks.ScoringConfig.scored_by`: model, checkpoint, data, calibration
    draw, units, budget's table...); else None (the search scores them itself)."""
    if not cfg.blocks_policy:
        return None
    prov = load_policy(cfg.blocks_policy).provenance
    cands = prov.get("candidates")
    if not cands or prov.get("scored_by") != cfg.scored_by() or any(
            len(c["ratios"]) != units for c in cands):
        return None
    return [([float(x) for x in c["ratios"]], float(c["val_top1"])) for c in cands]


def scored_blocks(cfg: SearchConfig, scorer: Scorer, run_dir: Path, reward_at: RewardAt
                  ) -> list[Finalist]:
    """The blocks strategy's candidates (one per number of dropped blocks) scored as episodes
    are; read back from ``--blocks-finalists``' record when there is one."""
    rec, made = run_dir / BLOCKS_FILE, run_dir / CANDIDATES_FILE
    if rec.is_file():
        return [Finalist(**f) for f in json.loads(rec.read_text())["pool"]]
    if made.is_file():  # scored when the search made its blocks policy
        scored = [(c["ratios"], c["val_top1"]) for c in json.loads(made.read_text())]
    elif (handed := handed_candidates(cfg, len(scorer.pm.units))) is not None:
        scored = handed  # scored where the handed-over blocks policy was made
    else:
        scored = [(r, scorer(r)) for r in blocks_candidates(scorer, cfg.parsed_budget(),
                                                            cfg.max_ratio,
                                                            fill=cfg.fill_vectors)]
    return [Finalist(f"blocks k={sum(r[u] >= DROP for u in scorer.pm.blocks)}", r,
                     reward_at(r)(t), val_top1=t) for r, t in scored]


def pool_of(cfg: SearchConfig, scorer: Scorer, run_dir: Path, reward_at: RewardAt
            ) -> list[Finalist]:
    """The policies the finalists are chosen from: the search's pick (first, whatever its
    score), its :data:`POOL` best distinct episodes and, with droppable blocks, the blocks
    strategy's candidates scored as episodes are."""
    names = [u.name for u in scorer.pm.units]
    best = load_policy(run_dir / "best_policy.json")
    ep = best.provenance.get("episode")
    pool = [Finalist(f"episode {ep} (the search's pick)", best.ratios_for(names), math.inf,
                     ep, best.metrics["val_top1"])]
    pool += [Finalist(f"episode {c.episode}", c.ratios, c.reward, c.episode, c.val_top1)
             for c in candidates(read_rows(run_dir / "episodes.csv"), scorer.pm, POOL)]
    if scorer.pm.blocks:
        pool += scored_blocks(cfg, scorer, run_dir, reward_at)
    return pool


def _metrics(scorer: Scorer, reward_at: RewardAt, pick: Finalist) -> dict[str, float]:
    """A picked finalist's episode metrics: its val top-1 as the search scored it (scored
    now only where not known) and the reward of that."""
    top1 = pick.val_top1 if pick.val_top1 is not None else scorer(pick.ratios)
    return {"val_top1": top1, "reward": reward_at(pick.ratios)(top1)}


@contextmanager
def finetuning(cfg: SearchConfig, scorer: Scorer, say=print):
    """Yields a function fine-tuning finalists as both stages do (``--finalist-images``,
    ``--finalist-epochs``, distilled from the dense model, from the plainly pruned,
    BN-recalibrated network, one seed) and scoring them on all of val: it runs in this
    process on the cores the search's workers hold or held (they are idle then)."""
    threads = torch.get_num_threads()
    tc = TrainConfig(**PrunedOptimConfig().optim_fields(), epochs=cfg.finalist_epochs,
                     seed=cfg.seed, eval_splits=(),
                     threads=max(1, cfg.threads or 1) * max(1, cfg.workers), device=cfg.device)
    torch.set_num_threads(tc.threads)
    try:
        data = load_dataset(cfg.data, **cfg.dataset_kwargs(cfg.model))
        teacher = create_model(cfg.model, num_classes=cfg.num_classes,
                               checkpoint=cfg.checkpoint, unsafe_load=cfg.unsafe_load)
        train_data = train_view(data, cfg.finalist_images, cfg.seed)
        yield lambda fins, known=None, margin_se=0.0, **kw: finetune_finalists(
            fins, replace(scorer, reconstruct=False).pruned, train_data, tc,
            data.tensors("val"), teacher, say, known, margin_se, **kw)
    finally:
        torch.set_num_threads(threads)


def finalists_estimate(cfg: SearchConfig, scorer: Scorer, run_dir: Path, reward_at: RewardAt,
                       blocks_ft: dict[str, Any] | None, per_round: int = 1
                       ) -> FinalistEstimate:
    """With ``--time-limit-finalists``: what ``--finalists`` (:func:`finetunes_left` of them,
    plus the ``per_round`` episodes of the next round, each of which may become one) and the
    pick's latency check will take after the rescoring (``blocks_ft``:
    :func:`blocks_by_finetune`'s return, whose fine-tunes time one)."""
    val = len(load_dataset(cfg.data, **cfg.dataset_kwargs(cfg.model)).labels["val"])  # cached
    return FinalistEstimate(cfg.finalists, blocks_ft["per_finetune"] if blocks_ft else None,
                            cfg.finalist_images * cfg.finalist_epochs + val,
                            max(1, cfg.threads or 1) * max(1, cfg.workers),
                            check_seconds(cfg, scorer),
                            lambda: finetunes_left(cfg, scorer, run_dir, reward_at), per_round)


def blocks_by_finetune(cfg: SearchConfig, scorer: Scorer, run_dir: Path, reward_at: RewardAt,
                       say=print) -> dict[str, Any] | None:
    """``--blocks-finalists``: the blocks candidate the warm start demonstrates, picked among
    the ``blocks_finalists`` best by score as the one best on all of val after the short
    fine-tune (recorded in :data:`BLOCKS_FILE`; a resumed search reads it back). Returns
    its ``ratios``, its episode ``metrics``, its ``name``, the ``seconds`` the stage took
    when it was made and one fine-tune's mean seconds (``per_finetune``), or None when the
    stage does not apply (fewer than 2, no droppable block, no cheap warm start)."""
    rec = run_dir / BLOCKS_FILE
    if cfg.blocks_finalists < 2 or not scorer.pm.blocks or cfg.warm_start != "cheap":
        rec.unlink(missing_ok=True)
        return None
    t0 = time.perf_counter()
    if rec.is_file():
        d = json.loads(rec.read_text())
    else:
        pool = scored_blocks(cfg, scorer, run_dir, reward_at)
        chosen = sorted(pool, key=lambda f: -f.score)[:cfg.blocks_finalists]
        with finetuning(cfg, scorer, say) as run:
            res = run(chosen)
        d = {"blocks_finalists": cfg.blocks_finalists, "images": cfg.finalist_images,
             "epochs": cfg.finalist_epochs, **res,
             "ratios": [f.ratios for f in chosen],
             "pick": asdict(chosen[res["chosen"]]), "pool": [asdict(f) for f in pool],
             "stage_seconds": time.perf_counter() - t0}
        write_json(rec, d)
    pick = Finalist(**d["pick"])
    return {"ratios": pick.ratios, "name": pick.name, "seconds": d["stage_seconds"],
            "metrics": _metrics(scorer, reward_at, pick), "per_finetune": _per_finetune(d)}


def _blocks_record(run_dir: Path) -> dict:
    """``--blocks-finalists``' record in ``run_dir`` (empty: none)."""
    rec = run_dir / BLOCKS_FILE
    return json.loads(rec.read_text()) if rec.is_file() else {}


def _known(cfg: SearchConfig, rec: dict) -> dict[tuple[float, ...], float]:
    """The val top-1 after the fine-tune of the blocks candidates ``--blocks-finalists``
    fine-tuned with ``cfg``'s very recipe, by their ratios (:func:`ratios_key`)."""
    if (rec.get("images"), rec.get("epochs")) != (cfg.finalist_images, cfg.finalist_epochs):
        return {}
    return {ratios_key(r): row["val_top1_after"]
            for r, row in zip(rec.get("ratios", []), rec["rows"])}


def finetunes_left(cfg: SearchConfig, scorer: Scorer, run_dir: Path, reward_at: RewardAt
                   ) -> int:
    """How many fine-tunes ``--finalists`` would make were the search to end now: its
    finalists among the episodes so far, less the blocks candidates ``--blocks-finalists``
    fine-tuned already (with droppable blocks they are often the finalists of the other sets
    of dropped blocks). Without that record (the pool would need the blocks candidates
    scored), before a best policy or while a file is being written: ``finalists``, the most
    it can be."""
    n = cfg.finalists if cfg.finalists >= 2 else 0
    rec = _blocks_record(run_dir)
    if not n or not rec or not (run_dir / "best_policy.json").is_file():
        return n
    try:
        chosen = pick_finalists(scorer.pm, pool_of(cfg, scorer, run_dir, reward_at), n)
    except (ValueError, KeyError, IndexError):  # a row or policy half written right now
        return n
    known = _known(cfg, rec)
    return sum(ratios_key(f.ratios) not in known for f in chosen) if len(chosen) >= 2 else 0


def _per_finetune(rec: dict) -> float | None:
    """One fine-tune's mean seconds in ``--blocks-finalists``' record (None: none timed)."""
    timed = [r["seconds"] for r in rec.get("rows", []) if not r.get("reused")]
    return sum(timed) / len(timed) if timed else None


def pick_by_finetune(cfg: SearchConfig, scorer: Scorer, run_dir: Path, reward_at: RewardAt,
                     say=print, deadline: float | None = None) -> dict[str, Any]:
    """``--finalists``: fine-tune the finalists and keep the best on all of val after it when
    it leads the search's pick by more than ``cfg.finalist_margin_se`` standard errors
    (``best_policy.json``; the policy picked before is kept as ``search_best_policy.json``
    where it was not already). ``deadline`` (``--time-limit-finalists``: a
    :func:`time.perf_counter` time): the finalists whose fine-tunes would end past it are
    left out (:func:`~amc.train.finalists.finetune_finalists`). Returns the summary's
    ``finalists`` fields."""
    out = run_dir / "finalists.json"
    if cfg.finalists < 2:
        out.unlink(missing_ok=True)
        return {"finalists": None, "finalist_seconds": 0.0}
    t0 = time.perf_counter()
    chosen = pick_finalists(scorer.pm, pool_of(cfg, scorer, run_dir, reward_at), cfg.finalists)
    if len(chosen) < 2:  # nothing to choose between (every episode one network)
        out.unlink(missing_ok=True)
        return {"finalists": None, "finalist_seconds": time.perf_counter() - t0}
    d = _blocks_record(run_dir)
    known = _known(cfg, d)
    per = _per_finetune(d)
    with finetuning(cfg, scorer, say) as run:
        res = run(chosen, known, cfg.finalist_margin_se, deadline=deadline,
                  per_finetune=per and per * PICK_FINETUNE_FACTOR)
    chosen = chosen[:len(res["rows"])]  # those the deadline left out were not fine-tuned
    pick = chosen[res["chosen"]]
    best_file, own = run_dir / "best_policy.json", run_dir / "search_best_policy.json"
    if res["chosen"]:
        if not own.is_file():
            write_text(own, best_file.read_text())
        make_policy(scorer.pm, pick.ratios, cfg.model, cfg.parsed_budget(), "amc", cfg.seed,
                    cfg.max_ratio, {**_metrics(scorer, reward_at, pick),
                                    "val_top1_after_finalist_ft": res["rows"][res["chosen"]][
                                        "val_top1_after"]},
                    episode=pick.episode, reward_type=cfg.reward,
                    picked_by=f"val top-1 after a short fine-tune among {len(chosen)} "
                              f"finalists ({pick.name})").save(best_file)
    write_json(out, {"finalists": cfg.finalists, "images": cfg.finalist_images,
                     "epochs": cfg.finalist_epochs, "margin_se": cfg.finalist_margin_se, **res,
                     "stage_seconds": time.perf_counter() - t0,
                     "ratios": [f.ratios for f in chosen]})
    return {"finalists": {"chosen": pick.name, "candidates": len(chosen),
                          "val_top1_after": [r["val_top1_after"] for r in res["rows"]],
                          "names": [r["name"] for r in res["rows"]],
                          "left_out": res["left_out"]},
            "finalist_seconds": time.perf_counter() - t0}
