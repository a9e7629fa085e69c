"""Warm-started search: the agent starts from the cheap allocations instead of random ones.

AMC's DDPG begins with 100 episodes of uniformly random actions, so its first policies are
far worse than what a user gets in seconds from a uniform ratio or Torch-Pruning's global
ranking. A warm start

1. scores the cheap policies (``uniform``, ``global`` and, given a cached sweep,
   ``sensitivity``: :func:`cheap_policies`), which also gives the lines to beat;
2. fills the replay buffer during the warm-up with them: each played exactly once, then
   perturbed copies (the noise's demonstrations, :class:`~.noise.TruncatedNormalNoise`);
3. fits the actor to the best warm-up episode (:class:`WarmStart`, a callback acting on
   the agent's public ``actor``/``actor_target``), so that exploration starts around the
   best cheap policy, with a narrower σ than the paper's random start;
4. hands the best complete episode so far to the noise (its pair moves trade around it);
5. and, every ``anchor_every`` episodes after that, fits it again to the best complete
   episode so far (self-imitation): on ResNet-56 at 30 % FLOPs the DDPG updates had moved
   the fitted actor's own policy from 54.8 % to 46-48 % val within 100 episodes, so the
   search explored around policies far worse than the one it started from.

The paper's random warm-up stays available (``--warm-start random``).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import polyak_update

from amc.envs import ActionMap
from amc.prune.baselines import (
    allocate_by_sensitivity,
    blocks_then_uniform,
    global_ranking,
    read_sensitivity,
    uniform,
)
from amc.prune.budget import Budget, unreachable
from amc.prune.policy import load_policy
from amc.prune.scoring import Scorer
from amc.utils.errors import AmcError
from amc.utils.ridge import ridge_solve

from .noise import TruncatedNormalNoise

MODES = ("cheap", "random")

PLATEAU_GAIN = 0.01
"""A fit of the actor goes on while its error falls by this share within ``patience`` steps."""

RIDGES = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
"""Ridges tried by :func:`solve_last_layer`, largest first, relative to the mean diagonal of the
system solved (:func:`~amc.utils.ridge.ridge_solve`: the Gram matrix of the last layer's
inputs, a row per unit). The units' hidden features are nearly collinear (a ResNet-56 search's
actor: 27 rows of rank 26, eigenvalues 1e-9 to 77), so an exact least-norm fit needs
last-layer weights up to ~40, against ~17 at 1e-6 for an error of 8e-5 and ~3 at 1e-2 for
9e-3 (Adam steps alone: ~4)."""


def solve_last_layer(actor: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     tol: float | None = None) -> bool:
    """Move the actor's last linear layer, in closed form, so that ``actor(x)`` is near ``y``.

    The least change of the layer's weights and bias (ridge regression of the residual on
    the layer's inputs, found with a forward hook) that makes its outputs the targets: through
    ``tanh`` where the actor squashes its output with it (as SB3's DDPG actor does), as they
    are where it does not. With fewer rows than the layer has inputs (27 units, 300 hidden
    features for ResNet-56) the fit is exact in the limit of no ridge unless two rows reach
    the layer alike, which then get the mean of their targets. Of :data:`RIDGES` the largest
    whose mean squared error is below ``tol`` is kept, else the one of least error if it beats
    the layer as it was (a saturated actor, its ``tanh`` at ±1 where Adam's gradients
    vanish, is brought back this way: keeping no solve where none reached ``tol`` left three
    of five ResNet-56 searches' actors stuck at errors of 1.0-1.4 from their 7th-19th fit on,
    ``results/search_solve_tol_amx52.md``). Returns whether the layer changed: False also
    where the actor's output is neither the layer's nor its ``tanh``.
    """
    last = [m for m in actor.modules() if isinstance(m, torch.nn.Linear)]
    if not last or last[-1].out_features != y.shape[1]:
        return False
    layer, seen = last[-1], {}
    hook = layer.register_forward_hook(lambda m, i, o: seen.update(h=i[0], z=o))
    try:
        with torch.no_grad():
            out = actor(x)
    finally:
        hook.remove()
    if "h" not in seen or seen["z"].shape != out.shape:
        return False
    h, z = seen["h"].double(), seen["z"].double()
    if torch.allclose(out.double(), torch.tanh(z), atol=1e-5):
        target = torch.atanh(y.double().clamp(-0.999, 0.999))
    elif torch.allclose(out.double(), z, atol=1e-5):
        target = y.double()
    else:
        return False
    cols = [h] if layer.bias is None else [h, torch.ones(len(h), 1, dtype=h.dtype)]
    ha = torch.cat(cols, 1)
    if not ha.any():  # every hidden unit dead and no bias: nothing to move
        return False
    params = [p for p in (layer.weight, layer.bias) if p is not None]
    start = [p.detach().clone() for p in params]
    with torch.no_grad():
        best = (float(torch.nn.functional.mse_loss(out, y)), start)
        for ridge in RIDGES:
            delta = ridge_solve(ha, target - z, ridge)  # (inputs [+ bias]) x outputs
            layer.weight.copy_(start[0] + delta[:h.shape[1]].T.to(layer.weight.dtype))
            if layer.bias is not None:
                layer.bias.copy_(start[1] + delta[-1].to(layer.bias.dtype))
            mse = float(torch.nn.functional.mse_loss(actor(x), y))
            if tol is not None and mse < tol:
                return True
            if mse < best[0]:
                best = (mse, [p.detach().clone() for p in params])
        for p, v in zip(params, best[1], strict=True):
            p.copy_(v)
    return best[1] is not start


def load_sweep(path: str | Path, unit_names: Sequence[str]) -> tuple[float, np.ndarray,
                                                                     list[float]]:
    """A cached sensitivity sweep (``sensitivity.json`` of ``amc compare``, or the CSV of
    ``amc sensitivity``) for these units: (dense val top-1, accuracy matrix, ratios swept)."""
    p = Path(path)
    try:
        d = read_sensitivity(p) if p.suffix.lower() == ".csv" else json.loads(p.read_text())
        dense, acc, ratios = float(d["dense_val_top1"]), np.asarray(d["val_top1"], float), \
            [float(r) for r in d["ratios"]]
        if acc.shape != (len(d.get("units", [])), len(ratios)):
            raise ValueError("not one score per unit and ratio")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AmcError(f"cannot read the sensitivity sweep {p} ({type(e).__name__}); pass the "
                       "CSV of amc sensitivity or the sensitivity.json of amc compare") from None
    if list(d.get("units", [])) != list(unit_names):
        raise AmcError(f"the sensitivity sweep {p} was made for other units; sweep this "
                       "model with the same --units")
    return dense, acc, ratios


CHEAP = ("uniform", "global", "sensitivity", "blocks")
"""The names :func:`cheap_policies` may return."""


def cheap_policies(scorer: Scorer, budget: Budget, max_ratio: float,
                   sweep: str | Path | None = None,
                   known: dict[str, list[float]] | None = None,
                   blocks_scored: list[tuple[list[float], float]] | None = None,
                   fill: bool = True,
                   blocks_value: Callable[[list[float], float], float] | None = None
                   ) -> dict[str, list[float]]:
    """The allocations a user gets without a search: uniform, global, (given a cached
    sweep) sensitivity and (with droppable blocks) blocks; each meets the budget, and one that
    cannot reach it is left out (AMC may, dropping blocks). ``known``: policies already made
    (a resumed search's), returned as they are instead of made again (blocks scores up to
    2 x blocks + 1 networks). ``blocks_scored``: receives the blocks strategy's scored
    candidates when it makes its policy here; ``fill``: its candidates' channels past one
    vector filled (:func:`~amc.prune.baselines.blocks_candidates`; the episodes replaying the
    others fill theirs); ``blocks_value``: how the blocks candidates are ranked, of their
    ratios and val top-1 (the search's reward; None: val top-1)."""
    known = known or {}
    makers = {"uniform": uniform, "global": global_ranking}
    if sweep:
        dense, acc, ratios = load_sweep(sweep, [u.name for u in scorer.pm.units])
        makers["sensitivity"] = lambda s, b, m: allocate_by_sensitivity(s, b, dense, acc,
                                                                         ratios, m)
    if scorer.pm.blocks:
        makers["blocks"] = lambda s, b, m: blocks_then_uniform(s, b, m, scored=blocks_scored,
                                                               fill=fill, value=blocks_value)
    out = {}
    for name, make in makers.items():
        if name in known:
            out[name] = known[name]
            continue
        try:
            out[name] = make(scorer, budget, max_ratio)
        except AmcError as e:
            if not unreachable(e):
                raise
    # as exact fractions, so that the episodes replaying them remove the same channels
    return {k: scorer.pm.canonical(v) for k, v in out.items()}


def handed_over(path: str | Path, model: str, budget: str, units: list[str]) -> list[float]:
    """The ratios, for ``units``, of the blocks policy at ``path`` (``--blocks-policy``),
    checked to be one of ``model`` at ``budget``.

    Raises:
        AmcError: It is not (one line, naming the fix).
    """
    p = load_policy(path)
    strategy = p.provenance.get("strategy")
    if (p.model, p.budget, strategy) != (model, budget, "blocks"):
        raise AmcError(f"--blocks-policy {path} is a {strategy} policy of {p.model} at "
                       f"{p.budget}; pass the blocks policy of {model} at {budget} (or none)")
    return p.ratios_for(units)


def demo_actions(policies: dict[str, list[float]], actions: ActionMap) -> list[list[float]]:
    """Per-unit actions in [0, 1] that replay ``policies`` (best first)."""
    return [actions.actions(ratios) for ratios in policies.values()]


class WarmStart(BaseCallback):
    """At the end of a demonstrating warm-up, fit the actor to the best episode so far.

    Args:
        noise: The search's noise (it knows when the warm-up ends).
        observations: Maps a policy's ratios to the observations the env shows for it
            (one row per unit).
        actions: How ratios map to actions (:class:`~amc.envs.actions.ActionMap`).
        best: (reward, ratios) of the best complete episode before a resume, if any.
        steps: Most Adam steps of the fit (it stops once the mean squared error, in SB3's
            [-1, 1] action scale, is below ``tol``; 300 steps had left 0.02-0.05 on
            ResNet-56's 27 units, actions off by ~0.2).
        tol: Mean squared error at which the fit stops.
        patience: Steps without a ``PLATEAU_GAIN`` fall of the fit's best error after which
            it stops: where the actor cannot reproduce the policy (its error stuck at 0.014
            in a ResNet-56 search of results/compare_resnet56_amx53_lean52, seed 3), each
            re-anchoring ran all ``steps`` (3-5 s per episode on the driver, the workers
            waiting: half that search's episodes lost).
        anchor_every: After the first fit, fit again to the best complete episode so far
            every this many episodes, counted from the warm-up's end (0: never).
        defer: Runs a fit later instead of now (an :class:`~.updates.OverlapUpdates`'s
            ``defer``: while remote envs evaluate, as the agent's updates are).
        lr: Learning rate of the fit.
        record: Called with what the fit did (for the run directory).
        solve: Fit the actor's last layer in closed form first (:func:`solve_last_layer`),
            the Adam steps then only where that left it above ``tol``; False (the default):
            Adam steps only.
    """

    def __init__(self, noise: TruncatedNormalNoise,
                 observations: Callable[[Sequence[float]], np.ndarray], actions: ActionMap,
                 best: tuple[float, list[float]] | None = None, steps: int = 3000,
                 tol: float = 1e-4, anchor_every: int = 0, patience: int = 100,
                 defer: Callable[[Callable[[], object]], None] | None = None,
                 lr: float = 1e-3, record: Callable[[dict], None] | None = None,
                 solve: bool = False):
        super().__init__(verbose=0)
        self.noise, self.observations, self.actions = noise, observations, actions
        self.best, self.steps, self.lr, self.record = best, steps, lr, record
        self.tol, self.anchor_every, self.defer = tol, anchor_every, defer
        self.patience, self.solve = patience, solve
        self.fits = 0
        self._scheduled = 0  # fits asked for (made later when deferred)
        self._step_seconds: float | None = None
        self.history: list[dict] = []
        """Each fit of this session: the episodes then, its steps, final mse and seconds."""
        self._last_fit = noise.episodes
        self.fitted = noise.episodes >= noise.warmup  # resumed past the warm-up
        if best is not None:
            noise.incumbent = actions.replay(best[1])

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            r = info.get("episode_result")
            if r is not None and r.get("complete", True) and (
                    self.best is None or r["reward"] > self.best[0]):
                self.best = (float(r["reward"]), list(r["ratios"]))
                self.noise.incumbent = self.actions.replay(self.best[1])
        if not self.best or self.noise.episodes < self.noise.warmup:
            return True
        if not self.fitted or (self.anchor_every and self._period(self.noise.episodes)
                               > self._period(self._last_fit)):
            self.fitted, self._last_fit = True, self.noise.episodes
            self._scheduled += 1
            best = (self.best[0], list(self.best[1]))
            if self.defer is None:
                self.fit(best[1], best[0])
            else:
                self.defer(lambda: self.fit(best[1], best[0]))
        return True

    def pending_seconds(self) -> float:
        """Seconds a fit asked for but not yet made (deferred to the next round of episodes)
        will add to that round, 0 when none is: the most a fit can take, ``steps`` Adam steps,
        each at the pace of this session's fits so far (their seconds over their steps, so
        that a short fit's fixed costs or one step another process preempted does not set
        the pace of 3,000) or, before any, the median of 20 steps timed on a copy of the
        actor. A fit's length varies widely (ResNet-56 searches: 40 steps in 0.13 s, then
        2,600 in 5.9 s), so the bound is the whole: 3,000 at their pace, 6.9 s.
        :class:`~.time_limit.StopAtWallTime` adds it to the next round's usual time (a round
        with a fit is not usual): the first fit (1.4 s on a 16-wide actor, rounds of 0.1 s)
        had taken a tiny search past ``--time-limit``."""
        if self._scheduled <= self.fits:
            return 0.0
        steps = sum(h["steps"] for h in self.history)
        if steps:
            return sum(h["seconds"] for h in self.history if h["steps"]) / steps * self.steps
        if self._step_seconds is None:
            actor = copy.deepcopy(self.model.actor)
            x = torch.as_tensor(self.observations(self.best[1]), dtype=torch.float32)
            y = torch.zeros(len(x), 1)
            opt = torch.optim.Adam(actor.parameters(), lr=self.lr, fused=True)
            times = []
            with torch.enable_grad():
                for i in range(22):  # the first two: one-off set-up, not timed
                    t = time.perf_counter()
                    loss = torch.nn.functional.mse_loss(actor(x), y)
                    loss.item()
                    _step(opt, loss)
                    if i >= 2:
                        times.append(time.perf_counter() - t)
            self._step_seconds = float(np.median(times))
        return self._step_seconds * self.steps

    def made_seconds(self) -> float:
        """Seconds of this session's fits."""
        return sum(h["seconds"] for h in self.history)

    def _period(self, episodes: int) -> int:
        """Anchoring periods begun after ``episodes`` (at warm-up + k x anchor_every, so a
        resumed search anchors where an uninterrupted one does)."""
        return (episodes - self.noise.warmup) // self.anchor_every

    def fit(self, ratios: Sequence[float], reward: float | None = None) -> float:
        """Regress the actor on ``ratios`` (the policy of an episode of ``reward``) and copy
        it to the target actor; returns the final mean squared error in SB3's [-1, 1]
        action scale."""
        actor, target = self.model.actor, self.model.actor_target
        self.model.policy.set_training_mode(True)  # weights change: no remembered prediction
        x = torch.as_tensor(self.observations(ratios), dtype=torch.float32)
        a = np.asarray(self.actions.actions(ratios), dtype=np.float64)
        y = torch.as_tensor(np.clip(2.0 * a - 1.0, -0.98, 0.98), dtype=torch.float32)[:, None]
        t0, steps = time.perf_counter(), 0
        solved = self.solve and solve_last_layer(actor, x, y, self.tol)
        params = list(actor.parameters())
        opt = torch.optim.Adam(params, lr=self.lr, fused=True)  # as the agent's
        best, since = float("inf"), 0  # the best error so far, steps since it fell enough
        start = [p.detach().clone() for p in params]  # once: a copy per step made them 28 % slower
        first = None  # the error the steps started from
        with torch.enable_grad():
            while steps < self.steps:
                loss = torch.nn.functional.mse_loss(actor(x), y)
                value = loss.item()
                first = value if first is None else first
                if value < self.tol:
                    break
                if value < best * (1.0 - PLATEAU_GAIN):
                    best, since = value, 0
                else:
                    since += 1
                    if since >= self.patience:  # as close as the actor gets
                        break
                _step(opt, loss)
                steps += 1
        with torch.no_grad():
            mse = float(torch.nn.functional.mse_loss(actor(x), y))
            if first is not None and mse > first:  # the steps went up: undone
                for p, v in zip(params, start, strict=True):
                    p.copy_(v)
                mse = float(torch.nn.functional.mse_loss(actor(x), y))
        polyak_update(actor.parameters(), target.parameters(), 1.0)
        self.fitted = True
        self.fits += 1
        self.history.append({"episodes": self._last_fit, "steps": steps, "mse": mse,
                             "seconds": time.perf_counter() - t0, "solved": solved})
        if self.record is not None:
            self.record({"fitted_to": list(map(float, ratios)), "reward": reward,
                         "mse": mse, "steps": steps, "episodes": self._last_fit,
                         "fits": self.fits, "history": self.history})
        return mse


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One Adam step of the actor's fit on ``loss`` (its value read, as the fit reads it)."""
    opt.zero_grad()
    loss.backward()
    opt.step()
