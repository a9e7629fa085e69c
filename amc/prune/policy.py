"""Ratio policies: the versioned JSON document that records per-unit pruning ratios.

A policy names the model, the unit mode and criterion it was found with, one
``{name, ratio}`` per unit, the budget, the achieved MACs/params ratios and its provenance.
:func:`load_policy` validates everything; :func:`apply_policy` prunes a fresh copy of the
model to it, so a policy exported by a search reproduces the same architecture elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from amc.prune.budget import MAX_RATIO, Budget, resource_fn
from amc.prune.depth import DROP
from amc.prune.units import CRITERIA, MODES, PrunableModel
from amc.utils.device import device_of
from amc.utils.errors import AmcError, one_line
from amc.utils.io import write_json
from amc.utils.provenance import amc_version, git_commit, now

FORMAT = "amc-policy"
VERSION = 2
"""2: ``drop_blocks`` and ratio :data:`~amc.prune.depth.DROP` (a dropped block); version 1
documents are read as policies without dropped blocks."""
READS = (1, 2)
REQUIRED = ("format", "version", "model", "mode", "criterion", "units", "budget")


@dataclass
class Policy:
    """Per-unit pruning ratios and how they were found.

    Attributes:
        model: Registry name of the model.
        mode: Unit mode (``all`` or ``internal``).
        criterion: Channel importance criterion.
        units: One ``{"name", "ratio"}`` (plus channel counts) per unit, in forward order.
        budget: The budget, e.g. ``flops:0.5``.
        input_size: (C, H, W) the costs refer to.
        round_to: Channel rounding used when pruning.
        max_ratio: Largest channel-pruning ratio allowed for a unit.
        drop_blocks: Whether units that are a basic block's inner width may take ratio
            :data:`~amc.prune.depth.DROP` (the block dropped whole).
        achieved: Achieved ``macs_ratio``/``params_ratio`` and absolute values (at a
            latency budget also ``latency_ratio``, the lookup table's prediction).
        metrics: Measured accuracies (e.g. ``val_top1``).
        provenance: Strategy, seed, package version, git commit, time.
    """

    model: str
    mode: str
    criterion: str
    units: list[dict[str, Any]]
    budget: str
    input_size: list[int] = field(default_factory=list)
    round_to: int | None = None
    max_ratio: float = MAX_RATIO
    drop_blocks: bool = False
    achieved: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def ratios(self) -> list[float]:
        """The ratios in the policy's own unit order."""
        return [float(u["ratio"]) for u in self.units]

    def ratios_for(self, names: Iterable[str]) -> list[float]:
        """The ratios in the order of ``names`` (e.g. a :class:`PrunableModel`'s units).

        Raises:
            AmcError: A name has no ratio in the policy.
        """
        by = {u["name"]: float(u["ratio"]) for u in self.units}
        try:
            return [by[n] for n in names]
        except KeyError as e:
            raise AmcError(f"the policy has no ratio for unit {e.args[0]!r}; pass a complete "
                           "policy") from None

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    def save(self, path: str | Path) -> Path:
        """Write the policy atomically (a reader never sees half a file)."""
        return write_json(path, self.to_dict())


def make_policy(pm: PrunableModel, ratios: Sequence[float], model_name: str,
                budget: str | Budget, strategy: str, seed: int | None = None,
                max_ratio: float = MAX_RATIO, metrics: dict[str, float] | None = None,
                **extra: Any) -> Policy:
    """Build a policy for ``pm``'s units from ``ratios`` and record what it achieves.

    A latency :class:`Budget` (not its string) also records the fraction of the dense
    latency that its lookup table predicts (``achieved["latency_ratio"]``, what the budget
    was held to) and where that table was measured (``provenance["latency_table"]``).
    """
    ratios = [float(r) for r in ratios]
    macs, params = pm.cost(ratios)
    latency: dict[str, Any] = {}
    if isinstance(budget, Budget) and budget.kind == "latency":
        from amc.prune.latency_table import LatencySpec

        spec = budget.latency or LatencySpec()
        latency = {"latency_ratio": resource_fn(pm, budget)(ratios)}
        extra = {**extra, "latency_table": {"backend": spec.backend, "batch": spec.batch,
                                            "threads": spec.threads}}
    # ratios are stored unrounded (JSON keeps a float exactly): a rounded ratio can fall just
    # below a channel boundary and keep one channel more than ``kept`` and ``achieved`` say,
    # breaking the budget when the policy is applied
    units = [{"name": u.name, "ratio": r, "channels": u.n, "kept": pm.kept(i, r)}
             for i, (u, r) in enumerate(zip(pm.units, ratios))]
    return Policy(
        model=model_name, mode=pm.mode, criterion=pm.criterion, units=units, budget=str(budget),
        input_size=list(pm.input_size), round_to=pm.round_to, max_ratio=max_ratio,
        drop_blocks=bool(pm.blocks),
        achieved={"macs_ratio": macs / pm.dense_macs, "params_ratio": params / pm.dense_params,
                  "macs": macs, "params": params, **latency},
        metrics=dict(metrics or {}),
        provenance={"strategy": strategy, "seed": seed, "amc_version": amc_version(),
                    "git_commit": git_commit(), "created": now(), **extra},
    )


def policy_from_dict(d: Any, where: str = "policy") -> Policy:
    """Validate a decoded policy document."""
    if not isinstance(d, dict):
        raise AmcError(f"{where} is not a JSON object; pass a policy written by amc")
    for key in REQUIRED:
        if key not in d:
            raise AmcError(f"{where} lacks the field {key!r}; pass a complete amc policy")
    if d["format"] != FORMAT:
        raise AmcError(f"{where} has format {d['format']!r}, expected {FORMAT!r}")
    if d["version"] not in READS:
        raise AmcError(f"{where} is policy version {d['version']!r}; this amc reads versions "
                       f"{', '.join(map(str, READS))}: re-export it with this amc")
    if d["mode"] not in MODES:
        raise AmcError(f"{where} has unknown mode {d['mode']!r}; use auto, all or internal")
    if d["criterion"] not in CRITERIA:
        raise AmcError(f"{where} has unknown criterion {d['criterion']!r}")
    max_ratio = float(d.get("max_ratio", MAX_RATIO))
    if not 0 < max_ratio < 1:
        raise AmcError(f"{where} has max_ratio {max_ratio}; it must lie in (0, 1)")
    round_to = d.get("round_to")
    if round_to is not None and (not isinstance(round_to, int) or isinstance(round_to, bool)
                                 or round_to < 1):
        raise AmcError(f"{where} has round_to {round_to!r}; it must be a whole number of at "
                       "least 1 or null")
    size = d.get("input_size")
    if size is not None and (not isinstance(size, list) or not size or not all(
            isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in size)):
        raise AmcError(f"{where} has input_size {size!r}; it must be a list of positive "
                       "whole numbers (C, H, W) or null")
    drop = d.get("drop_blocks", False)
    if not isinstance(drop, bool):
        raise AmcError(f"{where} has drop_blocks {drop!r}; it must be true or false")
    units = d["units"]
    if not isinstance(units, list) or not units:
        raise AmcError(f"{where} has no units; pass a policy with one entry per unit")
    for i, u in enumerate(units):
        if not isinstance(u, dict) or "name" not in u or "ratio" not in u:
            raise AmcError(f"{where}: unit {i} lacks 'name' or 'ratio'")
        r = u["ratio"]
        if not isinstance(r, int | float) or isinstance(r, bool) or not (
                0 <= r <= max_ratio or (drop and r == DROP)):
            dropped = f" or {DROP:g} (a dropped block)" if drop else ""
            raise AmcError(f"{where}: unit {u['name']!r} has ratio {r!r}, outside "
                           f"[0, {max_ratio:g}]{dropped}; fix the ratio")
    known = {f.name for f in Policy.__dataclass_fields__.values()}
    return Policy(**{k: v for k, v in d.items() if k in known})


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file."""
    p = Path(path)
    if p.is_dir():
        raise AmcError(f"policy file {str(p)!r} is a folder; pass a policy JSON")
    if not p.is_file():
        raise AmcError(f"policy file {str(p)!r} does not exist; pass a policy JSON")
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AmcError(f"{p} is not valid JSON ({e.__class__.__name__}); pass a policy JSON") \
            from e
    return policy_from_dict(d, str(p))


def check_policy(policy: Policy, pm: PrunableModel, model_name: str | None = None) -> None:
    """Check that ``policy`` fits the model ``pm`` was built on."""
    if model_name is not None and policy.model != model_name:
        raise AmcError(f"the policy is for model {policy.model!r}, not {model_name!r}; pass "
                       "the matching --model or policy")
    names = [u.name for u in pm.units]
    given = [u["name"] for u in policy.units]
    unknown = [n for n in given if n not in names]
    if unknown:
        raise AmcError(f"the policy names unit {unknown[0]!r}, which {policy.model} does not "
                       f"have in {policy.mode!r} mode; pass a policy made for this model")
    ratios = policy.ratios_for(names)  # refuses a unit without a ratio
    width = {u["name"]: u.get("channels") for u in policy.units}
    other = [u for u in pm.units if isinstance(width.get(u.name), int) and width[u.name] != u.n]
    if other:
        u = other[0]
        raise AmcError(f"the policy was made for {width[u.name]} channels in unit {u.name!r}, "
                       f"which has {u.n} here (a model already pruned?); apply it to the "
                       "dense model it was made for")
    wrong = [u.name for u, r in zip(pm.units, ratios) if r >= DROP and u.index not in pm.blocks]
    if wrong:
        raise AmcError(f"the policy drops unit {wrong[0]!r}, which is not the inner width of a "
                       "droppable basic block; pass a policy made for this model")
    # ``kept`` is written beside each ratio for the reader; the ratio is what is applied, so
    # a file edited in one and not the other is refused rather than half-followed
    said = {u["name"]: u.get("kept") for u in policy.units}
    for i, (u, r) in enumerate(zip(pm.units, ratios)):
        k = said.get(u.name)
        if isinstance(k, int) and not isinstance(k, bool) and k != pm.kept(i, r):
            raise AmcError(f"the policy's unit {u.name!r} says kept {k} of {u.n} channels, but "
                           f"its ratio {r:g} keeps {pm.kept(i, r)} (the ratio is what is "
                           "applied); fix the ratio, or delete 'kept' to apply it as it is")


def prunable_for(policy: Policy, model: nn.Module,
                 calib: tuple[torch.Tensor, torch.Tensor] | None = None) -> PrunableModel:
    """The :class:`PrunableModel` a policy was made with."""
    size = tuple(policy.input_size) if policy.input_size else None
    if size is None:
        from amc.models.registry import model_spec

        size = model_spec(policy.model).input_size
    training = model.training
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, *size, device=device_of(model)))
    except RuntimeError as e:
        raise AmcError(f"the policy's input size {'x'.join(map(str, size))} does not fit "
                       f"{policy.model} ({one_line(e)}); pass a policy made "
                       "for this model") from e
    finally:
        model.train(training)
    return PrunableModel(model, size, policy.mode, policy.criterion, policy.round_to, calib,
                         policy.drop_blocks)


def apply_policy(model: nn.Module, policy: Policy, model_name: str | None = None,
                 calib: tuple[torch.Tensor, torch.Tensor] | None = None) -> nn.Module:
    """Return a pruned copy of ``model`` (dense architecture) following ``policy``."""
    pm = prunable_for(policy, model, calib)
    check_policy(policy, pm, model_name)
    return pm.prune(policy.ratios_for(u.name for u in pm.units))
