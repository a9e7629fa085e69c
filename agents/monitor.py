"""The search's callback: episodes.csv, best policy, TensorBoard scalars, progress, and
checkpoints of agent, replay buffer and counters for ``--resume``."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from amc.prune.policy import make_policy
from amc.prune.units import PrunableModel
from amc.utils.io import atomic_write, write_text
from amc.utils.progress import make_bar

from .config import SearchConfig


def episode_columns(pm: PrunableModel) -> list[str]:
    return (["episode"] + [f"ratio:{u.name}" for u in pm.units]
            + ["macs_ratio", "params_ratio", "budget_ratio", "val_top1", "reward", "seconds",
               "images", "prune_s", "repair_s", "eval_s", "run_seconds"])


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def complete_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The ``episodes.csv`` rows scored on all of the search's ``val`` images (racing stops
    the others early; rows without an image count predate racing and are complete)."""
    full = max((int(r["images"]) for r in rows if r.get("images")), default=0)
    return [r for r in rows if not r.get("images") or int(r["images"]) >= full]


def write_rows(path: Path, columns: list[str], rows: list[dict]) -> None:
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


class SearchMonitor(BaseCallback):
    """Records every finished episode exactly once and checkpoints the search.

    Args:
        cfg: The search configuration.
        run_dir: The run directory.
        pm: The prunable model (for column names and policies).
        done: Episodes already recorded (when resuming).
        best_reward: Best raw reward so far (when resuming).
        extra_state: Objects with ``state()`` saved in every checkpoint (noise, baseline).
    """

    def __init__(self, cfg: SearchConfig, run_dir: Path, pm: PrunableModel, done: int = 0,
                 best_reward: float | None = None, extra_state: dict[str, Any] | None = None):
        super().__init__(verbose=0)
        self.cfg, self.run_dir, self.pm = cfg, run_dir, pm
        self.done = done
        self.best_reward = best_reward
        self.extra_state = extra_state or {}
        self.columns = episode_columns(pm)
        self.csv_path = run_dir / "episodes.csv"
        self.last_ckpt = done
        self._bar = None
        self._task = None
        self._t0 = time.perf_counter()

    # -------------------------------------------------------------- SB3 hooks
    def _on_training_start(self) -> None:
        if not self.csv_path.exists():
            write_rows(self.csv_path, self.columns, [])
        if self.best_reward is not None:  # a resumed search races against its best so far
            self.training_env.set_attr("best_reward", self.best_reward)
        self._bar = make_bar(extra="best")
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("search", total=self.cfg.episodes,
                                            completed=self.done, best="")

    def _on_rollout_start(self) -> None:
        if self.done - self.last_ckpt >= self.cfg.checkpoint_every:
            self.save_checkpoint()

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            res = info.get("episode_result")
            if res is not None and self.done < self.cfg.episodes:
                self._record(res)
        return self.done < self.cfg.episodes

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    # -------------------------------------------------------------- recording
    def _record(self, res: dict) -> None:
        self.done += 1
        row = {"episode": self.done,
               **{f"ratio:{u.name}": f"{r:.6f}" for u, r in zip(self.pm.units, res["ratios"])},
               "macs_ratio": f"{res['macs_ratio']:.6f}",
               "params_ratio": f"{res['params_ratio']:.6f}",
               "budget_ratio": (f"{res['budget_ratio']:.6f}" if "budget_ratio" in res
                                else ""),
               "val_top1": f"{res['val_top1']:.4f}", "reward": f"{res['reward']:.6f}",
               "seconds": f"{res['seconds']:.3f}", "images": res.get("images", ""),
               "run_seconds": f"{time.perf_counter() - self._t0:.3f}",
               **{k: f"{res[k]:.4f}" for k in ("prune_s", "repair_s", "eval_s") if k in res}}
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow(row)
        if res.get("complete", True) and (self.best_reward is None
                                          or res["reward"] > self.best_reward):
            self.best_reward = res["reward"]
            self.training_env.set_attr("best_reward", self.best_reward)  # racing bar
            pol = make_policy(self.pm, res["ratios"], self.cfg.model, self.cfg.parsed_budget(),
                              "amc", self.cfg.seed, self.cfg.max_ratio,
                              {"val_top1": res["val_top1"], "reward": res["reward"]},
                              episode=self.done, reward_type=self.cfg.reward)
            pol.save(self.run_dir / "best_policy.json")
        self.logger.record("amc/reward", res["reward"])
        self.logger.record("amc/val_top1", res["val_top1"])
        self.logger.record("amc/macs_ratio", res["macs_ratio"])
        self.logger.record("amc/best_reward", self.best_reward)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done,
                             best=f"best reward {self.best_reward:.4f}")

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        """Atomically save agent, replay buffer and counters (``ckpt/``)."""
        ckpt, tmp, old = (self.run_dir / n for n in ("ckpt", "ckpt.tmp", "ckpt.old"))
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.model.save(tmp / "agent.zip", exclude=["action_noise"])
        self.model.save_replay_buffer(tmp / "replay.pkl")
        best = self.run_dir / "best_policy.json"
        if best.is_file():  # the best policy as of this checkpoint, for restore_best
            shutil.copyfile(best, tmp / "best_policy.json")
        state = {"episodes_done": self.done, "best_reward": self.best_reward,
                 "num_timesteps": self.model.num_timesteps,
                 **{k: v.state() for k, v in self.extra_state.items()}}
        (tmp / "state.json").write_text(json.dumps(state, default=_jsonable))
        if ckpt.exists():
            shutil.rmtree(old, ignore_errors=True)
            ckpt.rename(old)
        tmp.rename(ckpt)
        shutil.rmtree(old, ignore_errors=True)
        self.last_ckpt = self.done


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, dict):
        return dict(o)
    return str(o)


def find_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a run, if any."""
    for name in ("ckpt", "ckpt.old"):
        p = run_dir / name
        if (p / "state.json").is_file() and (p / "agent.zip").is_file():
            return p
    return None


def restore_best(ckpt: Path, run_dir: Path, done: int, best_reward: float | None
                 ) -> float | None:
    """Put back the best policy of checkpoint ``ckpt`` (``done`` episodes), so that after a
    resume ``best_policy.json`` is always a row of the trimmed ``episodes.csv``: the episodes
    after the checkpoint are run again, as other episodes, so their best is gone with them.

    Returns:
        The best reward to carry on with (the checkpoint's).
    """
    best_file = run_dir / "best_policy.json"
    saved = ckpt / "best_policy.json"
    if saved.is_file():
        write_text(best_file, saved.read_text())
    elif best_file.is_file():  # a checkpoint without its best policy (older amc)
        if int(json.loads(best_file.read_text())["provenance"].get("episode") or 0) > done:
            best_file.unlink()
            return None
    return best_reward
