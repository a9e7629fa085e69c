"""Per-layer latency lookup table for ``latency:`` budgets and rewards.

Each counted layer (conv, linear, BatchNorm) is timed alone on this machine at a few kept
fractions of its channels (times the number of calls of a module called more than once); the
network's latency at per-unit ratios is predicted as the sum of interpolated layer times (at
the layer's exact kept fractions, :meth:`PrunableModel.layer_keep`) plus a constant for
everything else (activations, adds, pooling, attention).
Tables are cached on disk under the amc cache dir, keyed by the layer shapes, batch size,
thread count, torch version and CPU.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from amc.cost.timing import interleaved
from amc.data.datasets import cache_dir
from amc.prune.units import PrunableModel

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def _layer_at(m: nn.Module, ko: float, ki: float) -> tuple[nn.Module, tuple[int, ...]]:
    if isinstance(m, nn.Conv2d):
        dw = m.groups > 1 and m.groups == m.in_channels
        out_c = max(1, round(m.out_channels * ko))
        in_c = out_c if dw else max(1, round(m.in_channels * ki))
        g = out_c if dw else (m.groups if in_c % m.groups == out_c % m.groups == 0 else 1)
        layer = nn.Conv2d(in_c, out_c, m.kernel_size, m.stride, m.padding, m.dilation,
                          groups=g, bias=m.bias is not None)
        return layer, (in_c,)
    if isinstance(m, nn.Linear):
        in_f, out_f = max(1, round(m.in_features * ki)), max(1, round(m.out_features * ko))
        return nn.Linear(in_f, out_f), (in_f,)
    c = max(1, round(m.num_features * ko))
    return type(m)(c), (c,)


@dataclass
class LatencyTable:
    """Measured layer times (ms) at kept fractions, and the constant rest.

    Attributes:
        points: Per counted layer, times at FRACTIONS (both channel dims scaled).
        rest_ms: Time of everything that is not a counted layer.
        dense_ms: Predicted dense latency.
    """

    points: list[list[float]]
    rest_ms: float
    dense_ms: float
    pm: PrunableModel | None = None

    def predict(self, ratios: Sequence[float]) -> float:
        """Predicted latency (ms) at per-unit ``ratios``."""
        pm = self.pm
        xs = [f * f for f in FRACTIONS]
        total = self.rest_ms
        for L, pts, (ko, ki) in zip(pm.layers, self.points, pm.layer_keep(ratios)):
            p = min(ko, ki) ** 2 if L.channelwise else ko * ki
            total += float(np.interp(p, xs, pts))
        return total

    def fraction(self, ratios: Sequence[float]) -> float:
        return self.predict(ratios) / self.dense_ms


def latency_table(pm: PrunableModel, batch: int = 1, runs: int = 15) -> LatencyTable:
    """Measure (or load from cache) the lookup table of ``pm``'s network."""
    threads = torch.get_num_threads()
    sig = json.dumps([[L.name, L.row.in_channels, L.row.out_channels, L.row.in_hw,
                       L.row.kernel, L.row.stride, L.calls]
                      for L in pm.layers] + [batch, threads, torch.__version__,
                                              platform.processor(), pm.round_to])
    key = hashlib.sha256(sig.encode()).hexdigest()[:16]
    path = cache_dir() / "latency" / f"{key}.json"
    if path.is_file():
        d = json.loads(path.read_text())
        return LatencyTable(d["points"], d["rest_ms"], d["dense_ms"], pm)
    points = []
    with torch.inference_mode():
        for L in pm.layers:
            m = pm.model.get_submodule(L.name)
            c = L.row
            fns = {}
            for f in FRACTIONS:  # the fractions of one layer timed side by side
                layer, (cin,) = _layer_at(m, f, f)
                layer.eval()
                shape = (batch, cin, *c.in_hw) if not isinstance(m, nn.Linear) else (batch, cin)
                fns[f] = lambda layer=layer, x=torch.randn(shape): layer(x)
            t = interleaved(fns, runs, rounds=3, warmup=3)
            points.append([L.calls * t[f]["q1_ms"] for f in FRACTIONS])
        x = torch.randn(batch, *pm.input_size)
        model = pm.model.eval()
        dense_total = interleaved({"dense": lambda: model(x)}, runs, 3, warmup=3)["dense"]["q1_ms"]
    layer_sum = sum(p[-1] for p in points)
    rest = max(0.0, dense_total - layer_sum)
    table = LatencyTable(points, rest, rest + layer_sum, pm)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"points": points, "rest_ms": rest, "dense_ms": table.dense_ms}))
    return table
