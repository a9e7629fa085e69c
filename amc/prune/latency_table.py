"""Per-layer latency lookup table for ``latency:`` budgets and rewards, measured on the target.

A :class:`LatencySpec` names the target: the backend (``torch``: PyTorch CPU eager; ``ort``:
ONNX Runtime CPU), the batch size and the intra-op thread count. Each counted layer (conv,
linear, BatchNorm) is built alone at kept fractions 1/16 to 1 of the channel dimensions that the
units can actually prune (output, input or both; a layer no unit reaches is timed once), a conv
with one such dimension of at most :data:`VECTORS_TIMED` CPU vectors also at every whole vector
of it (:func:`timed_fractions`), and
timed with the one timer, :func:`amc.cost.timing.interleaved`, on that backend: all variants
side by side with the whole calibration models (below) in one run, so that a load change on a
shared machine hits them alike. A layer's time counts all calls of a module called more than
once; layers of identical shape are timed once; a layer's times are made non-decreasing in its
width, so that noise cannot make pruning look slower.
For ``ort`` each layer variant is exported alone to ONNX in memory; BatchNorm layers count
zero there, as the ONNX export folds them into the convolutions.

The network's latency at per-unit ratios is predicted as ``scale * S + rest_ms``, where ``S``
is the sum of the layers' times interpolated at their exact kept fractions
(:meth:`PrunableModel.layer_keep`), a conv's kept output channels counted in whole vectors of
the CPU (:func:`~amc.prune.latency_timing.lanes`: on AVX-512 a conv keeping 33 of 64 outputs
costs what one keeping 48 does; with the linear interpolation alone the 20 validation policies of
``scripts/bench_latency_table.py`` ranked at Spearman 0.89-0.92 against their whole-model
timings on this project's AMX Xeon, with the vectors 0.96-0.97), and so are its kept input
channels once there are more than one vector of them
(:func:`~amc.prune.latency_timing.vector_inputs`: PyTorch's NCHW convs read 17 to 32 inputs
as 32, up to 16 linearly; ``results/conv_vectors.json``). ``scale`` and ``rest_ms``
are fitted by least squares to whole-model timings of the dense network and ``calib`` pruned
calibration policies (uniform and seeded random ratios, timed side by side); with ``calib=0``
the scale is 1 and the rest is the dense model's time minus the layer sum (everything that is
not a counted layer).

Tables are cached on disk under the amc cache dir (``latency/``), keyed by the layer shapes,
backend, batch, threads, calibration, library versions, CPU and allocator state
(:mod:`amc.utils.allocator`: the timings run with it settled).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from amc.cost.timing import interleaved, num_threads
from amc.data.datasets import cache_dir
from amc.prune.costmodel import CountedLayer
from amc.prune.depth import DROP
from amc.prune.latency_timing import lanes, runner, vector_inputs, whole_vectors
from amc.prune.units import PrunableModel
from amc.utils import allocator
from amc.utils.errors import AmcError
from amc.utils.io import atomic_write
from amc.utils.provenance import now

BACKENDS = ("torch", "ort")
FRACTIONS = (0.0625, 0.125, 0.25, 0.5, 0.75, 1.0)
"""Kept fractions of a layer's varying channel dimensions that are timed: down to 1/16, so
that every ratio up to 0.9375 falls between two measured points (the tables before METHOD 5
stopped at 1/4 and held every layer pruned past 0.75 at its 1/4 time: for ResNet-56 on 2
threads they predicted 0.728 of the dense latency for every uniform policy from 0.75 to 0.9,
where 0.555-0.586 was measured); below 1/16 a layer keeps its 1/16 time (narrower is not
slower)."""
VECTORS_TIMED = 8
"""A conv whose varying channels make at most this many CPU vectors is timed at every whole
vector of them too (:func:`timed_fractions`): PyTorch's NCHW convs do not cost in even steps per
vector (64 outputs at 8x8 with 8 lanes: 17-32 kept 0.45-0.55 of the whole conv, 33-40 already
0.85-0.88, 41-48 0.89-0.94; ``results/conv_vectors_avx2.json``), so 40 of 64, interpolated
between the times at 32 and 48, was charged 0.71 (the tables before METHOD 8)."""
METHOD = 8  # bumps the cache key when the measuring method changes (5: FRACTIONS from 1/16;
# 6: output channels counted in whole vectors, :func:`lanes`; 7: input channels past one
# vector too, :func:`vector_inputs`; 8: every whole vector timed, :data:`VECTORS_TIMED`)
_MEMO: dict[str, dict] = {}  # cache file -> its contents, read once per process
_READ: set[str] = set()  # the cache files of _MEMO read from disk (not measured here)


@dataclass(frozen=True)
class LatencySpec:
    """Where and how latency is measured.

    Attributes:
        backend: ``torch`` (PyTorch CPU eager) or ``ort`` (ONNX Runtime CPU).
        batch: Batch size the network is timed at (64: a served batch; 1: one request).
        threads: Intra-op threads of the backend during the measurement.
        runs: Timed runs per layer variant and per whole model.
        calib: Pruned calibration policies timed whole to fit the table's scale and rest
            (0: scale 1, rest from the dense model alone).
    """

    backend: str = "torch"
    batch: int = 64
    threads: int = 2
    runs: int = 15
    calib: int = 4

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise AmcError(f"unknown latency backend {self.backend!r}; use "
                           f"{' or '.join(BACKENDS)}")
        for name in ("batch", "threads", "runs"):
            if int(getattr(self, name)) < 1:
                raise AmcError(f"latency {name} must be at least 1, got {getattr(self, name)}")
        if self.calib < 0:
            raise AmcError(f"latency calib must be >= 0, got {self.calib}")

    @classmethod
    def from_config(cls, cfg: object) -> LatencySpec:
        """The spec of a config with ``latency_backend/_batch/_threads`` fields (others:
        defaults)."""
        d = cls()
        return cls(backend=getattr(cfg, "latency_backend", d.backend),
                   batch=getattr(cfg, "latency_batch", d.batch),
                   threads=getattr(cfg, "latency_threads", d.threads))

    def table(self, pm: PrunableModel) -> LatencyTable:
        """The lookup table of ``pm`` for this spec (measured once, then cached)."""
        return latency_table(pm, **asdict(self))


@dataclass
class LatencyTable:
    """Measured layer times (ms) at kept fractions, and the fitted scale and rest.

    Attributes:
        points: Per counted layer, times at kept fractions of its varying dimensions
            (``fractions``).
        dims: Per counted layer, how many of its channel dimensions units can prune (0-2).
        rest_ms: Fitted time of everything that is not a counted layer.
        dense_ms: Predicted dense latency.
        scale: Fitted factor on the sum of the layer times.
        measured: Calibration timings: ``layer_sum_ms`` and ``measured_ms`` per policy (the
            dense model first), and ``dense_rest_ms`` (the rest of the uncalibrated table).
        spec: What the table was measured on.
        pm: The network the table belongs to.
        lanes: Output channels the backend computes together (:func:`lanes`; 1: none).
        inputs: Whether a conv's kept inputs are counted in whole vectors too
            (:func:`vector_inputs`; False: linearly, the tables before METHOD 7).
        drop_ms: Fitted time per output element (per image) of a dropped block
            (:meth:`PrunableModel.dropped_elements`): the uncounted elementwise work (ReLUs,
            the residual add) a dropped block takes with it; 0 without droppable units.
        fractions: Per counted layer, the kept fractions its ``points`` are at
            (:func:`timed_fractions`; None: :data:`FRACTIONS` for every layer).
        cached_from: The cache file this process read the table from (None: measured by
            this process); ``measured["at"]`` says when it was measured (tables cached
            before the fifty-fourth session do not say).
    """

    points: list[list[float]]
    dims: list[int]
    rest_ms: float
    dense_ms: float
    scale: float = 1.0
    measured: dict = field(default_factory=dict)
    spec: LatencySpec = field(default_factory=LatencySpec)
    pm: PrunableModel | None = None
    lanes: int = 1
    drop_ms: float = 0.0
    inputs: bool = True
    fractions: list[list[float]] | None = None
    cached_from: str | None = None
    _vector_io: list[tuple[int, int]] = field(init=False, repr=False, compare=False)
    _interp: list[tuple[np.ndarray, np.ndarray]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # per layer, the outputs and inputs counted in whole vectors (0: linearly), and the
        # points and their positions as arrays, decided once: the budget clipping calls
        # layer_sum several times per step (np.interp converts lists at every call)
        self._vector_io = [
            (L.n_out, L.n_in if self.inputs else 0)
            if self.lanes > 1 and not L.channelwise and L.row is not None
            and L.row.type.startswith("Conv") else (0, 0)
            for L in (self.pm.layers if self.pm is not None else [])]
        fracs = self.fractions or [FRACTIONS] * len(self.points)
        self._interp = [(np.array([f ** d for f in fr]), np.array(pts, dtype=float))
                        for fr, d, pts in zip(fracs, self.dims, self.points)]

    def layer_sum(self, ratios: Sequence[float]) -> float:
        """Sum of the interpolated layer times (ms) at per-unit ``ratios``; a (not
        depthwise) conv's kept output channels are first rounded up to whole vectors
        (:attr:`lanes`), and its kept inputs past one vector (:attr:`inputs`); linear
        layers are not: their kernels were not measured so."""
        total = 0.0
        for (n_out, n_in), (xs, pts), d, (ko, ki) in zip(self._vector_io, self._interp,
                                                         self.dims, self.pm.layer_keep(ratios)):
            if d == 0:
                total += float(pts[-1])
                continue
            if min(ko, ki) <= 0:  # a dropped block's layer (amc.prune.depth): gone
                continue
            if n_out and ko < 1:
                ko = min(1.0, whole_vectors(max(1, round(ko * n_out)), self.lanes) / n_out)
            if n_in and ki < 1:
                ki = min(1.0, vector_inputs(max(1, round(ki * n_in)), self.lanes) / n_in)
            p = min(ko, ki) if d == 1 else ko * ki
            total += float(np.interp(p, xs, pts))
        return total

    def fill(self, unit: int, ratio: float) -> float:
        """``ratio`` with ``unit``'s kept channels past one vector rounded up to whole vectors
        (:attr:`lanes`): a conv computes those outputs a vector at a time and reads those
        inputs so (:func:`~amc.prune.latency_timing.vector_inputs`), and the table charges
        whole vectors for them, so the filled channels cost only their BatchNorm's share.
        Unchanged at or below one vector, for a dropped block, where whole vectors would
        split the unit's channel groups, and for a table without lanes or counting inputs
        linearly (METHOD 6)."""
        pm = self.pm
        kept, n, g = pm.kept(unit, ratio), pm.units[unit].n, pm.units[unit].groups
        if self.lanes <= 1 or not self.inputs or kept == 0:
            return ratio
        full = min(n, vector_inputs(kept, self.lanes))  # what the next conv reads them as
        if full == kept or full % g:
            return ratio
        s = n // g
        return ((n - full) // g) / s

    def predict(self, ratios: Sequence[float]) -> float:
        """Predicted latency (ms) at per-unit ``ratios``."""
        gone = self.drop_ms * self.pm.dropped_elements(ratios) if self.drop_ms else 0.0
        return self.scale * self.layer_sum(ratios) + self.rest_ms - gone

    def fraction(self, ratios: Sequence[float]) -> float:
        """Predicted latency at ``ratios`` as a fraction of the predicted dense latency."""
        return self.predict(ratios) / self.dense_ms

    def with_lanes(self, lanes: int, inputs: bool = True, vectors: bool = True
                   ) -> LatencyTable:
        """The same measurements predicting with ``lanes`` (1: linear in every width),
        ``inputs`` (False: inputs linear, the tables before METHOD 7) and ``vectors`` (False:
        only the points at :data:`FRACTIONS`, the tables before METHOD 8), the scale and rest
        fitted again on the table's own calibration timings."""
        table = replace(self, lanes=lanes, inputs=inputs)
        if not vectors and self.fractions:
            table = replace(table, fractions=None, points=[
                [p for f, p in zip(fr, pts) if f in FRACTIONS]
                for fr, pts in zip(self.fractions, self.points)])
        policies = [[0.0] * len(self.pm.units)] + calibration_policies(self.pm, self.spec.calib)
        return _calibrated(table, policies, self.measured["measured_ms"])[0]


def method_for(budgets: Sequence[str], reward: str | None = None) -> int | None:
    """What a run with these budgets and reward records as its latency table's method
    (:data:`METHOD`; None for a run that measures no latency, which any table reproduces)."""
    uses = reward == "latency" or any(str(b).startswith("latency") for b in budgets)
    return METHOD if uses else None


def timed_fractions(L: CountedLayer, varying: tuple[bool, bool], lanes: int) -> tuple[float, ...]:
    """The kept fractions a counted layer is timed at: :data:`FRACTIONS`, and for a (not
    depthwise) conv with exactly one varying dimension of at most :data:`VECTORS_TIMED`
    vectors of ``lanes`` channels every whole vector of it too (what :meth:`LatencyTable.
    layer_sum` rounds kept outputs, and kept inputs past one vector, up to).

    Args:
        L: The counted layer (one of :attr:`PrunableModel.layers`).
        varying: Whether units prune its (output, input) channels (:func:`_varying`).
        lanes: The backend's vector width (:func:`lanes`; 1: none).
    """
    ko, ki = varying
    if lanes <= 1 or ko == ki or L.channelwise or L.row is None \
            or not L.row.type.startswith("Conv"):
        return FRACTIONS
    n = L.n_out if ko else L.n_in
    k = -(-n // lanes)
    if not 1 < k <= VECTORS_TIMED:
        return FRACTIONS
    return tuple(sorted(set(FRACTIONS) | {i * lanes / n for i in range(1, k)}))


def _layer_at(m: nn.Module, ko: float, ki: float) -> tuple[nn.Module, int]:
    """A fresh copy of layer ``m`` keeping fractions ``ko`` / ``ki`` of its out/in channels,
    and its input channel count."""
    if isinstance(m, nn.Conv2d):
        dw = m.groups > 1 and m.groups == m.in_channels
        out_c = max(1, round(m.out_channels * ko))
        in_c = out_c if dw else max(1, round(m.in_channels * ki))
        g = out_c if dw else (m.groups if in_c % m.groups == out_c % m.groups == 0 else 1)
        layer = nn.Conv2d(in_c, out_c, m.kernel_size, m.stride, m.padding, m.dilation,
                          groups=g, bias=m.bias is not None)
        return layer, in_c
    if isinstance(m, nn.Linear):
        in_f, out_f = max(1, round(m.in_features * ki)), max(1, round(m.out_features * ko))
        return nn.Linear(in_f, out_f), in_f
    c = max(1, round(m.num_features * ko))
    return type(m)(c), c


def _varying(pm: PrunableModel) -> list[tuple[bool, bool]]:
    """Per counted layer: whether units prune its (output, input) channels; channelwise
    layers (BatchNorm, depthwise conv) have one dimension, reported as the output."""
    keep = pm.layer_keep([0.5] * len(pm.units))
    return [(min(ko, ki) < 1, False) if L.channelwise else (ko < 1, ki < 1)
            for L, (ko, ki) in zip(pm.layers, keep)]


def _signature(pm: PrunableModel, spec: LatencySpec, var: list[tuple[bool, bool]]) -> str:
    versions = [torch.__version__]
    if spec.backend == "ort":
        import onnxruntime

        versions.append(onnxruntime.__version__)
    cpu = [platform.machine(), platform.processor(), os.cpu_count()]
    sig = json.dumps([[L.name, L.row.in_channels, L.row.out_channels, L.row.in_hw,
                       L.row.kernel, L.row.stride, L.calls, d]
                      for L, d in zip(pm.layers, var)]
                     + [list(pm.input_size), pm.round_to, pm.mode, METHOD, spec.backend,
                        spec.batch, spec.threads, spec.calib, versions, cpu,
                        torch.backends.cpu.get_cpu_capability(), allocator.state()]
                     + ([["drop_blocks", sorted(pm.blocks)]] if pm.blocks else []))
    return hashlib.sha256(sig.encode()).hexdigest()[:16]


def _layer_variants(pm: PrunableModel, spec: LatencySpec, var: list[tuple[bool, bool]]
                    ) -> tuple[list[str | None], list[tuple[float, ...]],
                               dict[str, Callable[[], object]]]:
    """Per counted layer the key of its shape (None: counts zero) and the kept fractions of
    its varying dimensions it is timed at (:func:`timed_fractions`), and per key and fraction
    a runner (``"key@fraction"``); layers of identical shape share a key."""
    keys: list[str | None] = []
    grids: list[tuple[float, ...]] = []
    fns: dict[str, Callable[[], object]] = {}
    width = lanes(spec.backend)
    for L, (ko_var, ki_var) in zip(pm.layers, var):
        m = pm.model.get_submodule(L.name)
        grids.append(timed_fractions(L, (ko_var, ki_var), width))
        if spec.backend == "ort" and isinstance(m, nn.modules.batchnorm._BatchNorm):
            keys.append(None)  # folded into the conv on export
            continue
        key = repr((m, L.row.in_hw, ko_var, ki_var))
        keys.append(key)
        for f in grids[-1] if ko_var or ki_var else (1.0,):
            if f"{key}@{f}" in fns:
                continue
            layer, cin = _layer_at(m, f if ko_var else 1.0, f if ki_var else 1.0)
            shape = (spec.batch, cin) if isinstance(m, nn.Linear) else \
                (spec.batch, cin, *L.row.in_hw)
            # single layers run for about a millisecond: no spinning between sessions
            fns[f"{key}@{f}"] = runner(layer, torch.randn(shape), spec, spin=False)
    return keys, grids, fns


def _points(pm: PrunableModel, keys: list[str | None], grids: list[tuple[float, ...]],
            t: dict) -> list[list[float]]:
    """Per counted layer, its time (all calls) at its fractions (``grids``), non-decreasing in
    width."""
    points = []
    for L, key, grid in zip(pm.layers, keys, grids):
        if key is None:
            points.append([0.0] * len(grid))
            continue
        ts = [t[f"{key}@{f}"]["q1_ms"] if f"{key}@{f}" in t else t[f"{key}@1.0"]["q1_ms"]
              for f in grid]
        # a narrower layer is not slower: a noisy small variant is capped by wider ones
        points.append([L.calls * v for v in np.minimum.accumulate(ts[::-1])[::-1]])
    return points


def calibration_policies(pm: PrunableModel, n: int, max_ratio: float = 0.8) -> list[list[float]]:
    """``n`` calibration policies: uniform ratios spread over (0, max_ratio], then seeded
    random ones (a generator of its own, so that they differ from any user's draws); with
    droppable units (``drop_blocks``) ``n`` more, each dropping a random fifth to four fifths
    of the blocks and pruning the other units at random ratios."""
    k = len(pm.units)
    uni = [[max_ratio * (i + 1) / ((n + 1) // 2)] * k for i in range((n + 1) // 2)]
    rng = np.random.default_rng(20_181_004)
    rand = [rng.uniform(0.0, max_ratio, k).tolist() for _ in range(n - len(uni))]
    drops = []
    for i in range(n if pm.blocks else 0):
        r = rng.uniform(0.0, max_ratio, k)
        share = 0.2 + 0.6 * i / max(1, n - 1)
        for u in pm.blocks:
            if rng.random() < share:
                r[u] = DROP
        drops.append(r.tolist())
    return uni + rand + drops


def _calibrated(table: LatencyTable, policies: list[list[float]], measured: list[float]
                ) -> tuple[LatencyTable, list[float]]:
    """``table`` with its scale and rest fitted to the whole-model times ``measured`` of
    ``policies`` (the dense one first), and its layer sums at them."""
    sums = [table.layer_sum(r) for r in policies]
    gone = [table.pm.dropped_elements(r) for r in policies]
    scale, rest, drop = _fit(sums, measured, gone)
    return replace(table, scale=scale, rest_ms=rest, drop_ms=drop,
                   dense_ms=scale * sums[0] + rest), sums


def _fit(sums: list[float], measured: list[float], gone: list[int] | None = None
         ) -> tuple[float, float, float]:
    """(scale, rest, drop) of ``measured ~ scale * sums + rest - drop * gone`` by least
    squares (``gone``: dropped block elements per policy; drop 0 when none are), rest >= 0,
    scale > 0 and drop >= 0; with one point the scale is 1."""
    s, y = np.asarray(sums), np.asarray(measured)
    if len(s) < 2 or np.ptp(s) < 1e-9:
        return 1.0, max(0.0, float(y[0] - s[0])), 0.0
    e = np.asarray(gone if gone is not None else [0] * len(s), dtype=float)
    if np.ptp(e) > 0 and len(s) >= 4:
        a, b, c = np.linalg.lstsq(np.stack([s, np.ones_like(s), -e], 1), y, rcond=None)[0]
        if a > 0 and b >= 0 and c >= 0:
            return float(a), float(b), float(c)
    a, b = np.polyfit(s, y, 1)
    if b < 0 or a <= 0:
        a, b = float(s @ y / (s @ s)), 0.0
    return float(a), float(b), 0.0


def latency_table(pm: PrunableModel, batch: int = 64, threads: int = 2, backend: str = "torch",
                  runs: int = 15, calib: int = 4) -> LatencyTable:
    """Measure (or load from cache) the lookup table of ``pm``'s network.

    Args:
        pm: The prunable network.
        batch: Batch size.
        threads: Intra-op threads of the backend (torch's count is restored afterwards).
        backend: ``torch`` or ``ort``.
        runs: Timed runs per layer variant and per whole model.
        calib: Calibration policies timed whole (see :class:`LatencySpec`).

    Raises:
        AmcError: on an unknown backend or a bad count, or a network ONNX cannot export.
    """
    spec = LatencySpec(backend, int(batch), int(threads), int(runs), int(calib))
    allocator.settle()  # the timer would; before the cache key, which names its state
    var = _varying(pm)
    key = _signature(pm, spec, var)
    path = cache_dir() / "latency" / f"{key}.json"
    d = _MEMO.get(str(path))
    if d is None and path.is_file():
        d = json.loads(path.read_text())
        _READ.add(str(path))
    if d is None:
        d = _measure(pm, spec, var)
        with atomic_write(path) as tmp:  # Ray workers may read it meanwhile
            tmp.write_text(json.dumps(d))
    _MEMO[str(path)] = d
    return LatencyTable(d["points"], d["dims"], d["rest_ms"], d["dense_ms"], d["scale"],
                        d["measured"], spec, pm, d["lanes"], d.get("drop_ms", 0.0),
                        fractions=d.get("fractions"),
                        cached_from=str(path) if str(path) in _READ else None)


def reuse_note(table: LatencyTable) -> str | None:
    """The one-line notice that ``table`` was read from the cache rather than measured now
    (None when measured by this process): a search's latencies are only as good as the
    machine's quiet when its table was timed."""
    if table.cached_from is None:
        return None
    s = table.spec
    return (f"amc: note: the latency table ({s.backend}, batch {s.batch}, {s.threads} "
            f"thread(s)) was measured {table.measured.get('at', 'in an earlier session')} and "
            f"read from {table.cached_from}; delete that file to time it again (e.g. if the "
            "machine was busy then)")


def _measure(pm: PrunableModel, spec: LatencySpec, var: list[tuple[bool, bool]]) -> dict:
    """Time every layer variant and the calibration models in one interleaved run (a load
    change on a shared machine then hits the layers and the whole models alike), then fit."""
    dims = [int(o) + int(i) for o, i in var]
    policies = [[0.0] * len(pm.units)] + calibration_policies(pm, spec.calib)
    x = torch.randn(spec.batch, *pm.input_size, generator=torch.Generator().manual_seed(0))
    with num_threads(spec.threads), torch.no_grad():
        keys, grids, fns = _layer_variants(pm, spec, var)
        for i, r in enumerate(policies):
            fns[f"model:{i}"] = runner(pm.model if i == 0 else pm.prune(r), x, spec)
        t = interleaved(fns, spec.runs, rounds=5, warmup=2)
    points = _points(pm, keys, grids, t)
    measured = [t[f"model:{i}"]["q1_ms"] for i in range(len(policies))]
    table, sums = _calibrated(LatencyTable(points, dims, 0.0, 1.0, pm=pm, spec=spec,
                                           lanes=lanes(spec.backend),
                                           fractions=[list(g) for g in grids]),
                              policies, measured)
    return {"points": points, "dims": dims, "fractions": table.fractions,
            "rest_ms": table.rest_ms, "scale": table.scale, "lanes": table.lanes,
            "dense_ms": table.dense_ms, "drop_ms": table.drop_ms,
            "measured": {"layer_sum_ms": sums, "measured_ms": measured,
                         "dense_rest_ms": max(0.0, measured[0] - sums[0]),
                         "allocator": allocator.state(), "at": now()}}
