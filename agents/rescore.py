"""Re-ranking a finished search's best policies on all of ``val`` (``--rescore-top``).

The ``k`` best distinct episodes of ``episodes.csv`` (by the search's reward) are scored
again on the rest of ``val`` and the best on all of ``val`` is kept
(:func:`amc.prune.rescore.rescore`, which says why); the search's own pick stays as
``search_best_policy.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amc.data.datasets import load_dataset
from amc.prune.policy import load_policy, make_policy
from amc.prune.rescore import Candidate, RewardAt, rescore, rest_of_val, top_distinct
from amc.prune.scoring import Scorer, ScorerParts
from amc.prune.units import PrunableModel
from amc.utils.io import write_json, write_text

from .config import SearchConfig
from .monitor import complete_rows, read_rows

if TYPE_CHECKING:  # Ray is imported only where a search has workers
    from .parallel import ActorScorer


def candidates(rows: Sequence[dict[str, str]], pm: PrunableModel, k: int,
               exact: dict[int, list[float]] | None = None) -> list[Candidate]:
    """The ``k`` best distinct, completely scored episodes of ``episodes.csv`` rows, best
    first (earlier first among equal rewards). ``exact``: unrounded ratios by episode (the
    best policy's); a row whose ratios (written to 6 decimals) no longer give its recorded
    MACs is skipped: it would not be the policy searched."""
    names = [u.name for u in pm.units]
    valid: list[tuple[int, tuple[list[float], float, float]]] = []
    for r in complete_rows(list(rows)):
        ratios = (exact or {}).get(int(r["episode"])) or [float(r[f"ratio:{n}"])
                                                          for n in names]
        if abs(pm.cost(ratios)[0] / pm.dense_macs - float(r["macs_ratio"])) <= 1e-5:
            valid.append((int(r["episode"]), (ratios, float(r["val_top1"]),
                                              float(r["reward"]))))
    top = top_distinct(pm, [v for _, v in valid], k)
    return [replace(c, episode=valid[c.episode][0]) for c in top]


def rest_images(cfg: SearchConfig) -> int:
    """How many ``val`` images the rescoring scores each candidate on: those past the
    search's first ``val_limit`` (0 when the search sees all of ``val``)."""
    n = len(load_dataset(cfg.data, **cfg.dataset_kwargs(cfg.model)).labels["val"])  # cached
    return max(0, n - min(n, cfg.val_limit or n))


def pick_best(cfg: SearchConfig, scorer: Scorer, run_dir: Path, reward_at: RewardAt,
              actors: ActorScorer | None = None) -> dict[str, Any]:
    """``--rescore-top``: keep the best on all of val of the search's best policies
    (:func:`rescore`; ``reward_at``: the search's reward of ratios as a function of val
    top-1). ``actors``: the search's Ray actors, which then score the candidates, one per
    actor at a time. Writes ``best_policy.json`` and ``rescore.json`` and keeps the search's
    own best as ``search_best_policy.json``. Returns the summary's ``rescore`` fields."""
    own = run_dir / "search_best_policy.json"
    best_file = run_dir / "best_policy.json"

    def none() -> dict[str, Any]:  # the search's own best is kept (an earlier pick undone)
        if own.is_file():
            write_text(best_file, own.read_text())
            own.unlink()
        (run_dir / "rescore.json").unlink(missing_ok=True)
        return {"rescore": None, "rescore_seconds": 0.0}

    if cfg.rescore_top < 2 or not (best_file.is_file() or own.is_file()):
        return none()
    rest = rest_of_val(scorer, load_dataset(cfg.data, **cfg.dataset_kwargs(cfg.model))
                       .tensors("val"))
    if not len(rest[1]):  # the search saw all of val: nothing to rescore on
        return none()
    names = [u.name for u in scorer.pm.units]
    search_best = load_policy(own if own.is_file() else best_file)
    exact = {int(search_best.provenance["episode"]): search_best.ratios_for(names)}
    cands = candidates(read_rows(run_dir / "episodes.csv"), scorer.pm, cfg.rescore_top, exact)
    if len(cands) < 2:
        return none()
    if not own.is_file():
        write_text(own, best_file.read_text())
    remote: dict[str, Any] = {}
    if actors is not None:
        actors.load(replace(ScorerParts.of(scorer), x=rest[0], y=rest[1], device=cfg.device))
        remote = {"score": actors.score, "width": actors.workers}
    res = rescore(scorer, rest, cands, reward_at, **remote)
    c, row = cands[res["chosen"]], res["rows"][res["chosen"]]
    n_all = len(scorer.y) + res["images"]
    how = f"val top-1 on all {n_all} val images among the search's {len(cands)} best"
    if res["chosen"] == 0:  # the search's own best: its exact metrics, plus all of val's
        search_best.metrics["val_top1_all"] = row["val_top1_all"]
        search_best.provenance["picked_by"] = how
        search_best.save(best_file)
    else:  # metrics as episodes.csv holds them (val top-1 to 4 decimals, reward to 6)
        make_policy(scorer.pm, c.ratios, cfg.model, cfg.parsed_budget(), "amc", cfg.seed,
                    cfg.max_ratio,
                    {"val_top1": c.val_top1, "reward": c.reward,
                     "val_top1_all": row["val_top1_all"]},
                    episode=c.episode, reward_type=cfg.reward, picked_by=how).save(best_file)
    write_json(run_dir / "rescore.json", {"top": cfg.rescore_top, **res})
    return {"rescore": {"chosen_episode": c.episode,
                        "search_best_episode": cands[0].episode,
                        "search_best_val_top1": cands[0].val_top1,
                        "search_images": len(scorer.y),
                        "search_best_val_top1_all": res["rows"][0]["val_top1_all"],
                        "chosen_val_top1_all": row["val_top1_all"],
                        "images": n_all, "candidates": len(cands)},
            "rescore_seconds": res["seconds"]}
