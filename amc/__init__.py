"""amc: AutoML model compression.

AMC-style search of per-layer pruning ratios (He et al., ECCV 2018), then the smaller network,
physically pruned, fine-tuned, verified and exported. The public API, loaded lazily so that
``import amc`` stays light (no gymnasium, stable-baselines3, Ray or ONNX import)::

    import amc
    data = amc.load_dataset("digits")
    model = amc.create_model("digits_cnn")
    amc.search(model="digits_cnn", checkpoint="dense.pt", budget="flops:0.5", out="runs/s")
    pruned = amc.apply_policy(model, amc.load_policy("runs/s/best_policy.json"))

The stages, one sub-package each: :mod:`amc.data`, :mod:`amc.models`, :mod:`amc.cost`,
:mod:`amc.prune`, :mod:`amc.train`, :mod:`amc.deploy`, :mod:`amc.report`; :mod:`amc.envs`
and :mod:`amc.agents` are the RL side; :mod:`amc.cli` the command line.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    # data and models
    "load_dataset": "amc.data.datasets",
    "Dataset": "amc.data.datasets",
    "create_model": "amc.models.registry",
    "list_models": "amc.models.registry",
    "save_model": "amc.models.checkpoint",
    "evaluate": "amc.models.evaluate",
    "top1": "amc.models.evaluate",
    "model_cost": "amc.cost.macs",
    # pruning
    "PrunableModel": "amc.prune.units",
    "Budget": "amc.prune.budget",
    "MAX_RATIO": "amc.config.blocks",
    "Policy": "amc.prune.policy",
    "load_policy": "amc.prune.policy",
    "make_policy": "amc.prune.policy",
    "apply_policy": "amc.prune.policy",
    "recalibrate_bn": "amc.prune.repair",
    "build_scorer": "amc.prune.scoring",
    "run_strategy": "amc.prune.baselines",
    # search (the RL side, imported only when used)
    "search": "amc.agents.search",
    "SearchConfig": "amc.agents.config",
    # training, fine-tuning, export
    "train": "amc.train.loop",
    "TrainConfig": "amc.train.loop",
    "finetune": "amc.train.finetune",
    "FinetuneConfig": "amc.train.finetune_config",
    "export": "amc.deploy.export",
    "AmcError": "amc.utils.errors",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'amc' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
