"""Where a fine-tune starts: how much of its architecture the ``--checkpoint`` network keeps
(an ``amc apply`` output is already pruned) and, from that, the distillation teacher."""

from __future__ import annotations

import logging

from torch import nn

from amc.cost.macs import count_params, model_cost
from amc.data.datasets import Dataset
from amc.models.evaluate import check_model_data
from amc.models.registry import create_model
from amc.prune.masks import bake
from amc.train.finetune_config import FinetuneConfig

log = logging.getLogger(__name__)


def macs_of_architecture(model: nn.Module, name: str, num_classes: int | None,
                         input_size: tuple[int, int, int]) -> float:
    """``model``'s MACs as a fraction of its dense architecture's (``name``): below 1 for a
    network already pruned, 1.0 when it has the architecture's parameters."""
    arch = create_model(name, num_classes=num_classes)
    if count_params(arch) == count_params(model):
        return 1.0
    return model_cost(model, input_size)[0] / model_cost(arch, input_size)[0]


def choose_teacher(cfg: FinetuneConfig, start: nn.Module, prunes: bool, start_ratio: float,
                   data: Dataset, main: bool = True) -> nn.Module | None:
    """The distillation teacher (``cfg.kd_weight`` > 0): ``cfg.teacher``, else the
    ``start`` network of a run that ``prunes`` it; a dense fine-tune has none, and a start
    already pruned (``start_ratio`` < 1) has none without ``--teacher``, which a notice says
    (logged where ``main``)."""
    if cfg.kd_weight <= 0:
        return None
    if cfg.teacher:
        teacher = create_model(cfg.model, num_classes=cfg.num_classes, checkpoint=cfg.teacher,
                               unsafe_load=cfg.unsafe_load)
        check_model_data(teacher, data, cfg.model)
        return bake(teacher)
    if start_ratio < 1 and main:
        log.warning(f"amc: note: {cfg.checkpoint} is already pruned ({start_ratio:.3f} of "
                    f"{cfg.model}'s MACs), so it is fine-tuned without distillation; pass "
                    "--teacher with the dense checkpoint to distil from it (--kd-weight)")
    return bake(start) if prunes else None
