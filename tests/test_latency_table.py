"""The per-layer latency table: named backends and settings, its cache key, the calibration
fit, ``latency:`` budgets measured on the given target, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amc.models.registry import create_model
from amc.prune.budget import Budget, meets, resource_fn, uniform_ratio
from amc.prune.latency_table import (
    FRACTIONS,
    LatencySpec,
    LatencyTable,
    _fit,
    _signature,
    _varying,
    latency_table,
    timed_fractions,
)
from amc.prune.latency_timing import lanes, time_models
from amc.prune.units import PrunableModel
from amc.utils.errors import AmcError

# small and quick: one timed run per round, one calibration policy
QUICK = {"runs": 3, "calib": 1}


@pytest.fixture(scope="module")
def pm() -> PrunableModel:
    torch.manual_seed(0)
    return PrunableModel(create_model("digits_cnn"), (1, 8, 8), "all")


def _files(cache) -> set[str]:
    return {p.stem for p in (cache / "latency").glob("*.json")}


def test_cache_key_separates_backend_threads_and_batch(pm, isolated_cache):
    threads = torch.get_num_threads()
    base = latency_table(pm, batch=4, threads=1, **QUICK)
    assert torch.get_num_threads() == threads  # restored after timing with 1 thread
    assert len(_files(isolated_cache)) == 1
    others = [dict(batch=4, threads=2), dict(batch=16, threads=1)]
    for i, kw in enumerate(others, start=2):
        latency_table(pm, **kw, **QUICK)
        assert len(_files(isolated_cache)) == i  # measured afresh, not the threads=1 table
    again = latency_table(pm, batch=4, threads=1, **QUICK)
    assert len(_files(isolated_cache)) == 3 and again.points == base.points  # reused
    keys = {_signature(pm, LatencySpec(b, 4, 1, **QUICK), _varying(pm)) for b in ("torch", "ort")}
    assert len(keys) == 2


def test_a_table_read_from_the_cache_says_so_and_when_it_was_measured(pm, isolated_cache,
                                                                      monkeypatch):
    """A table measured by this process has no notice; the same table in a later process
    (the in-memory copy gone) is read from its file, and the notice names the file and the
    time it was measured, which a later search prints."""
    import amc.prune.latency_table as lt

    monkeypatch.setattr(lt, "_MEMO", {})
    monkeypatch.setattr(lt, "_READ", set())
    made = latency_table(pm, batch=4, threads=1, **QUICK)
    assert made.cached_from is None and lt.reuse_note(made) is None
    assert latency_table(pm, batch=4, threads=1, **QUICK).cached_from is None  # memo
    monkeypatch.setattr(lt, "_MEMO", {})  # a new process
    read = latency_table(pm, batch=4, threads=1, **QUICK)
    (path,) = (isolated_cache / "latency").glob("*.json")
    assert read.cached_from == str(path) and read.points == made.points
    note = lt.reuse_note(read)
    assert note.startswith("amc: note: ") and "\n" not in note
    assert str(path) in note and made.measured["at"] in note and "batch 4" in note


def test_table_follows_batch(pm, isolated_cache):
    """A larger batch is slower: the table really runs at the batch it is asked for."""
    small = latency_table(pm, batch=2, threads=1, **QUICK)
    large = latency_table(pm, batch=128, threads=1, **QUICK)
    assert large.dense_ms > 4 * small.dense_ms
    assert sum(p[-1] for p in large.points) > 4 * sum(p[-1] for p in small.points)


def test_ort_backend_predicts_measured_latency(pm, isolated_cache):
    """The ONNX Runtime table (BatchNorm folded: no time of its own) predicts the dense and
    a pruned network within 3x of their whole-model timings. A table timed while the other
    xdist worker started Ray's processes was several-fold off (4.18 ms predicted for a
    0.71 ms network; 0.89 when quiet), so up to three tables are timed, each anew (5, 6 and
    7 runs: another cache entry), and one must be within 3x; a wrong table fails all."""
    n = len(pm.units)
    half = [0.5] * n
    off = []
    for runs in (5, 6, 7):
        spec = LatencySpec("ort", batch=32, threads=1, runs=runs, calib=0)
        table = spec.table(pm)
        assert table.cached_from is None  # timed here, not read back
        bn = [i for i, L in enumerate(pm.layers)
              if isinstance(pm.model.get_submodule(L.name), torch.nn.BatchNorm2d)]
        assert bn and all(table.points[i] == [0.0] * len(FRACTIONS) for i in bn)  # folded
        assert table.predict(half) < table.predict([0.0] * n)
        measured = time_models({"dense": pm.model, "half": pm.prune(half)}, pm.input_size,
                               spec)
        off = [(name, table.predict(r), measured[name])
               for name, r in (("dense", [0.0] * n), ("half", half))
               if not 1 / 3 < table.predict(r) / measured[name] < 3]
        if not off:
            break
    assert not off, off


def test_latency_budget_uses_given_spec(pm, isolated_cache):
    spec = LatencySpec("torch", batch=8, threads=1, **QUICK)
    budget = Budget("latency", 1.0)
    f = resource_fn(pm, budget, latency=spec)
    assert _files(isolated_cache) == {_signature(pm, spec, _varying(pm))}  # that target only
    n = len(pm.units)
    assert f([0.0] * n) == pytest.approx(1.0)
    floor = f([0.9] * n)
    assert floor < 1.0
    tight = Budget("latency", round((1.0 + floor) / 2, 4))
    r = uniform_ratio(pm, tight, max_ratio=0.9, latency=spec)
    assert 0 < r <= 0.9 and meets(pm, tight, [r] * n, latency=spec)
    assert not meets(pm, tight, [0.0] * n, latency=spec)
    assert _files(isolated_cache) == {_signature(pm, spec, _varying(pm))}  # still no default


def test_spec_from_config_and_flops_ignore_spec(pm):
    from amc.config.blocks import PruneConfig

    cfg = PruneConfig(latency_backend="ort", latency_batch=1, latency_threads=1)
    spec = LatencySpec.from_config(cfg)
    assert (spec.backend, spec.batch, spec.threads) == ("ort", 1, 1)
    n = len(pm.units)
    flops = resource_fn(pm, Budget("flops", 0.5), latency=spec)  # no table measured
    assert flops([0.0] * n) == pytest.approx(1.0)


def test_fit_recovers_scale_and_rest():
    sums = [10.0, 6.0, 3.0, 8.0]
    scale, rest, drop = _fit(sums, [0.8 * s + 2.0 for s in sums])
    assert scale == pytest.approx(0.8) and rest == pytest.approx(2.0) and drop == 0.0
    # a negative intercept is not a time: the fit goes through the origin instead
    scale, rest, _ = _fit(sums, [1.5 * s - 3.0 for s in sums])
    assert rest == 0.0 and scale > 0
    assert _fit([10.0], [12.5]) == (1.0, 2.5, 0.0)  # dense only: the rest of the dense model
    # dropped blocks take elementwise time beyond their layers: recovered from the policies
    # that drop some (elements per policy), which a fit without it would put in the scale
    gone = [0, 0, 4, 2, 6]
    sums = [10.0, 6.0, 3.0, 8.0, 5.0]
    measured = [0.8 * s + 2.0 - 0.25 * e for s, e in zip(sums, gone)]
    assert _fit(sums, measured, gone) == pytest.approx((0.8, 2.0, 0.25))
    assert _fit(sums, measured)[0] != pytest.approx(0.8)


@pytest.mark.parametrize("kw, match", [
    (dict(backend="tensorrt"), "unknown latency backend 'tensorrt'; use torch or ort"),
    (dict(threads=0), "threads must be at least 1"),
    (dict(batch=0), "batch must be at least 1"),
])
def test_bad_spec_refused_in_one_line(pm, isolated_cache, kw, match):
    with pytest.raises(AmcError, match=match) as e:
        latency_table(pm, **kw)
    assert "\n" not in str(e.value)
    with pytest.raises(AmcError, match=match):
        LatencySpec(**kw)
    assert not (isolated_cache / "latency").exists()  # refused before any timing


def test_bad_backend_from_config_refused():
    from amc.config.blocks import PruneConfig

    with pytest.raises(AmcError, match="unknown latency backend 'onnx'"):
        LatencySpec.from_config(PruneConfig(latency_backend="onnx"))


def test_predict_interpolates_between_measured_points(pm, isolated_cache):
    table = latency_table(pm, batch=4, threads=1, **QUICK)
    n = len(pm.units)
    pts = np.asarray([table.predict([r] * n) for r in np.linspace(0, 0.8, 9)])
    assert np.all(np.isfinite(pts)) and pts.min() > 0
    assert table.predict([0.0] * n) == pytest.approx(table.dense_ms)


def test_a_policy_at_a_latency_budget_records_the_tables_prediction(pm, isolated_cache,
                                                                    tmp_path):
    """``make_policy`` given a latency :class:`Budget` records the fraction of dense latency
    its table predicts for these ratios (what the budget held them to) and where the table
    was measured, through a save and load; the budget's string alone records none."""
    from amc.prune.policy import load_policy, make_policy

    quick = LatencySpec("torch", batch=4, threads=1, **QUICK)
    table = quick.table(pm)
    n = len(pm.units)
    light, heavy = [0.2] * n, [0.7] * n
    pols = [make_policy(pm, r, "m", Budget.parse("latency:0.9", quick), "uniform")
            for r in (light, heavy)]
    got = [load_policy(p.save(tmp_path / f"{i}.json")) for i, p in enumerate(pols)]
    assert [g.achieved["latency_ratio"] for g in got] == pytest.approx(
        [table.fraction(light), table.fraction(heavy)])
    assert got[1].achieved["latency_ratio"] < got[0].achieved["latency_ratio"]
    assert got[0].provenance["latency_table"] == {"backend": "torch", "batch": 4, "threads": 1}
    assert got[0].budget == "latency:0.9"
    assert "latency_ratio" not in make_policy(pm, light, "m", "latency:0.9", "u").achieved


def test_env_and_search_config_measure_where_the_config_says(pm, isolated_cache):
    """The spec travels from the config through the env's budget (no default table is built)."""
    from amc.agents import SearchConfig
    from amc.envs import AMCPruningEnv
    from amc.prune.scoring import Scorer

    cfg = SearchConfig(budget="latency:0.8", latency_batch=8, latency_threads=1)
    spec = cfg.env_kwargs()["latency"]
    assert (spec.batch, spec.threads) == (8, 1)
    quick = LatencySpec("torch", batch=8, threads=1, **QUICK)
    scorer = Scorer(pm, torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    env = AMCPruningEnv(scorer, budget="latency:0.8", latency=quick)
    assert env.budget.latency == quick
    assert _files(isolated_cache) == {_signature(pm, quick, _varying(pm))}
    # the string round-trips without the spec; flops budgets carry none
    assert str(env.budget) == "latency:0.8" and Budget.parse("flops:0.5", quick).latency is None


def test_conv_outputs_are_counted_in_whole_vectors(pm):
    """A conv's kept outputs cost what their next multiple of the vector width costs (the
    oneDNN kernels compute 16 fp32 outputs together on AVX-512): 33 of 64 as much as 48,
    more than 32; counted linearly (lanes 1) 33 is cheaper than 48."""
    dims = [int(o) + int(i) for o, i in _varying(pm)]
    conv = [L.name for L in pm.layers].index("features.3")  # 64 outputs, unit 1's
    points = [[(f ** d if i == conv else 0.0) for f in FRACTIONS] if d else [0.0]
              for i, d in enumerate(dims)]

    def cost(kept: int, width: int) -> float:
        table = LatencyTable(points, dims, 0.0, 1.0, pm=pm, lanes=width)
        return table.predict([0.0, 1 - kept / 64, 0.0, 0.0])

    assert cost(33, 16) == pytest.approx(cost(48, 16)) and cost(32, 16) < cost(33, 16)
    assert cost(33, 8) == pytest.approx(cost(40, 8)) and cost(40, 8) < cost(48, 8)
    assert cost(33, 1) < cost(48, 1) and cost(64, 16) == pytest.approx(cost(64, 1))
    assert lanes("ort") == 1 and lanes("torch") in (1, 8, 16)


def test_conv_inputs_past_one_vector_are_counted_in_whole_vectors(pm):
    """A conv's kept inputs cost what their next multiple of the vector width costs once there
    are more than one vector of them (PyTorch's NCHW oneDNN convs: 17 to 32 of 64 inputs as
    32), and linearly up to one vector; ``inputs=False`` (the tables before METHOD 7) counts
    them linearly throughout."""
    dims = [int(o) + int(i) for o, i in _varying(pm)]
    conv = [L.name for L in pm.layers].index("features.7")  # 64 inputs: unit 1's outputs
    points = [[(f ** d if i == conv else 0.0) for f in FRACTIONS] if d else [0.0]
              for i, d in enumerate(dims)]

    def cost(kept: int, width: int, inputs: bool = True) -> float:
        table = LatencyTable(points, dims, 0.0, 1.0, pm=pm, lanes=width, inputs=inputs)
        return table.layer_sum([0.0, 1 - kept / 64, 0.0, 0.0]) - table.layer_sum([1.0] * 4)

    # features.3 (unit 1's conv, 64 outputs) counts its outputs in vectors; the difference
    # below is features.7's: points of every other layer are zero
    assert cost(33, 16) == pytest.approx(cost(48, 16)) and cost(32, 16) < cost(33, 16)
    assert cost(17, 16) == pytest.approx(cost(32, 16))
    assert cost(8, 16) < cost(12, 16) < cost(16, 16)  # up to one vector: linear
    assert cost(12, 16) == pytest.approx(cost(12, 1))
    assert cost(9, 8) == pytest.approx(cost(16, 8)) and cost(8, 8) < cost(9, 8)
    assert cost(33, 16, inputs=False) < cost(48, 16, inputs=False)
    assert cost(33, 16, inputs=False) < cost(33, 16)


def test_table_credits_pruning_down_to_one_sixteenth(pm, isolated_cache, monkeypatch):
    """With layer times exactly linear in the kept fraction (a stand-in timer), the table
    predicts any policy exactly, also past a ratio of 0.75; a table timed only down to 1/4
    (the tables before METHOD 5) must not: it held every layer pruned further at its 1/4
    time."""
    import amc.prune.latency_table as lt

    rest = 3.0
    dims = [int(o) + int(i) for o, i in _varying(pm)]

    def exact(ratios) -> float:
        total = rest
        for L, d, (ko, ki) in zip(pm.layers, dims, pm.layer_keep(ratios)):
            total += L.calls * (1.0 if d == 0 else min(ko, ki) if d == 1 else ko * ki)
        return total

    def timer(fns, runs, rounds, warmup=1):
        out = {}
        policies = [[0.0] * len(pm.units)] + lt.calibration_policies(pm, QUICK["calib"])
        for key in fns:
            if key.startswith("model:"):
                ms = exact(policies[int(key[6:])])
            else:
                shape, f = key.rsplit("@", 1)
                d = sum(v.strip(" )") == "True" for v in shape.rsplit(",", 2)[-2:])
                ms = float(f) ** d  # all calls' time is points x calls
            out[key] = {"q1_ms": ms}
        return out

    monkeypatch.setattr(lt, "interleaved", timer)
    monkeypatch.setattr(lt, "lanes", lambda backend: 1)  # the stand-in is linear in width
    n = len(pm.units)
    rng = np.random.default_rng(0)
    policies = [[r] * n for r in (0.8, 0.85, 0.9)] + [rng.uniform(0, 0.9, n).tolist()
                                                      for _ in range(5)]
    table = latency_table(pm, batch=4, threads=1, **QUICK)
    for r in policies:
        assert table.predict(r) == pytest.approx(exact(r), rel=1e-9)
    assert table.predict([0.9] * n) < table.predict([0.75] * n)
    monkeypatch.setattr(lt, "FRACTIONS", (0.25, 0.5, 0.75, 1.0))
    old = latency_table(pm, batch=5, threads=1, **QUICK)  # batch 5: its own cache entry
    err = old.predict([0.9] * n) / exact([0.9] * n) - 1
    assert err > 0.05, err
    assert old.predict([0.9] * n) == pytest.approx(old.predict([0.75] * n))


def test_convs_of_few_vectors_are_timed_at_every_whole_vector(pm):
    """A conv with one varying dimension of at most VECTORS_TIMED vectors is timed at each
    whole vector (64 outputs, 8 lanes: 24, 40 and 56 too); with 16 lanes FRACTIONS already
    holds every vector of 64; BatchNorm, two varying dimensions, no lanes or more vectors than
    VECTORS_TIMED keep FRACTIONS."""
    convs = {L.name: L for L in pm.layers}
    conv, bn = convs["features.3"], convs["features.4"]  # 64 outputs, 32 inputs
    got = timed_fractions(conv, (True, False), 8)
    assert set(got) - set(FRACTIONS) == {3 / 8, 5 / 8, 7 / 8} and list(got) == sorted(got)
    assert set(timed_fractions(conv, (False, True), 8)) == set(FRACTIONS)  # 32 inputs: 4 vectors
    for args in ((conv, (True, False), 16), (conv, (True, True), 8), (conv, (True, False), 1),
                 (bn, (True, False), 8), (conv, (True, False), 4)):  # 16 vectors of 4
        assert timed_fractions(*args) == FRACTIONS, args


def test_table_times_the_step_between_two_fractions(isolated_cache, monkeypatch):
    """A conv whose time jumps between two of FRACTIONS (64 outputs with 8 lanes: 33-40 cost
    almost what 48 do, as measured on an AVX2 EPYC) is charged the jump at 40 kept, by the
    table measured at every whole vector (METHOD 8); the same measurements at FRACTIONS only
    (the tables before METHOD 8) interpolate between 32 and 48 and charge 40 less."""
    import amc.prune.latency_table as lt

    net = PrunableModel(create_model("resnet20"), (3, 8, 8), "internal")

    def step(f: float) -> float:
        return 0.5 if f <= 0.5 else 0.9 if f <= 0.75 else 1.0

    def timer(fns, runs, rounds, warmup=1):
        return {k: {"q1_ms": 10.0 if k.startswith("model:") else step(float(k.rsplit("@", 1)[1]))}
                for k in fns}

    monkeypatch.setattr(lt, "interleaved", timer)
    monkeypatch.setattr(lt, "lanes", lambda backend: 8)
    table = latency_table(net, batch=4, threads=1, runs=1, calib=0)
    coarse = table.with_lanes(8, vectors=False)
    unit = 7  # layer3.1's inner width: 64 channels at 2x2

    def at(kept: int) -> list[float]:
        r = [0.0] * len(net.units)
        r[unit] = 1 - kept / 64
        return r

    # conv1's outputs, bn1 (channelwise: FRACTIONS), conv2's inputs: 32 -> 40 kept
    assert table.layer_sum(at(40)) - table.layer_sum(at(32)) == pytest.approx(0.4 + 0.2 + 0.4)
    assert coarse.layer_sum(at(40)) - coarse.layer_sum(at(32)) == pytest.approx(0.2 * 3)
    assert table.layer_sum(at(48)) == pytest.approx(coarse.layer_sum(at(48)))  # a FRACTION
    monkeypatch.setattr(lt, "_MEMO", {})  # read back from the cache file
    again = latency_table(net, batch=4, threads=1, runs=1, calib=0)
    assert again.fractions == table.fractions
    assert again.layer_sum(at(40)) == table.layer_sum(at(40))


def test_num_threads_sets_and_restores_the_count_even_on_error():
    from amc.cost.timing import num_threads

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with num_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), num_threads(other):
        raise RuntimeError("timing failed")
    assert torch.get_num_threads() == before
    with num_threads(None):  # left as is
        assert torch.get_num_threads() == before


def test_conv_staircase_times_each_kept_count_relative_to_the_widest():
    """Both sides: every kept count gets a time relative to the widest (exactly 1), and a conv
    keeping 1 of 64 inputs at 16x16 is clearly cheaper than the whole one."""
    from amc.prune.latency_timing import conv_staircase

    threads = torch.get_num_threads()
    for side in ("out", "in"):
        f = conv_staircase(64, 16, side, [1, 64], batch=8, threads=1, runs=3)
        assert set(f) == {1, 64} and f[64] == 1.0
    assert f[1] < 0.6, f  # the inputs: 1 of 64 costs well below the whole conv
    assert torch.get_num_threads() == threads


def test_fill_rounds_channels_past_one_vector_up_at_no_conv_cost(pm):
    """:meth:`LatencyTable.fill` keeps a unit's channels past one vector in whole vectors
    (33 of 64 -> 48 with 16 lanes, 40 with 8), which the table charges its convs no more for;
    at or below one vector, without lanes or with inputs counted linearly (METHOD 6, where
    filled inputs would cost) the ratio is unchanged."""
    dims = [int(o) + int(i) for o, i in _varying(pm)]
    convs = {i for i, L in enumerate(pm.layers) if not L.channelwise}
    points = [[(f ** d if i in convs else 0.0) for f in FRACTIONS] if d else [0.0]
              for i, d in enumerate(dims)]

    def table(width: int, inputs: bool = True) -> LatencyTable:
        return LatencyTable(points, dims, 0.0, 1.0, pm=pm, lanes=width, inputs=inputs)

    def at(kept: int) -> list[float]:
        return [0.0, 1 - kept / 64, 0.0, 0.0]

    for width, want in ((16, 48), (8, 40)):
        t = table(width)
        filled = at(33)
        filled[1] = t.fill(1, filled[1])
        assert pm.kept(1, filled[1]) == want  # the fill does something
        assert t.layer_sum(filled) == pytest.approx(t.layer_sum(at(33)))  # convs: same cost
        assert t.layer_sum(at(want + 1)) > t.layer_sum(filled)  # one channel more would cost
    assert table(16).fill(1, 1 - 16 / 64) == 1 - 16 / 64  # one vector: linear inputs
    assert table(16).fill(1, 1 - 12 / 64) == 1 - 12 / 64
    assert table(1).fill(1, 1 - 33 / 64) == 1 - 33 / 64
    assert table(16, inputs=False).fill(1, 1 - 33 / 64) == 1 - 33 / 64


def test_fill_vectors_fills_a_policy_only_while_the_budget_holds(pm, monkeypatch):
    """The baselines' fill: units filled in turn while the latency budget holds (a filled
    unit's BatchNorm still costs its channels); a FLOPs budget is never filled."""
    from amc.prune.budget import fill_vectors

    dims = [int(o) + int(i) for o, i in _varying(pm)]
    points = [[f ** d for f in FRACTIONS] if d else [0.1] for d in dims]
    table = LatencyTable(points, dims, 0.0, 1.0, pm=pm, lanes=8)
    monkeypatch.setattr(LatencySpec, "table", lambda self, _pm: table)
    ratios = [0.45] * 4  # keeps 18 / 36 / 36 / 71 channels
    full = [table.fill(u, r) for u, r in enumerate(ratios)]
    assert [pm.kept(u, r) for u, r in enumerate(full)] == [24, 40, 40, 72]
    assert fill_vectors(pm, Budget("latency", table.fraction(full)), ratios) == full
    assert fill_vectors(pm, Budget("latency", table.fraction(ratios)), ratios) == ratios
    assert fill_vectors(pm, Budget("latency", table.fraction(full)), ratios, fill=False) == ratios
    assert fill_vectors(pm, Budget("flops", 1.0), ratios) == ratios


def test_a_latency_searchs_pick_is_timed_whole_beside_the_dense_network(pm, tmp_path,
                                                                         monkeypatch):
    """``measured_ratio`` times the dense network and the policy's pruned one side by side on
    the spec and returns their ratio; a latency search's pick is reported beside the table's
    prediction and the budget (flagged only when over it); a FLOPs search times nothing."""
    from dataclasses import replace
    from types import SimpleNamespace

    import amc.agents.latency_check as check
    import amc.prune.latency_timing as timing
    from amc.agents import SearchConfig
    from amc.prune.policy import make_policy

    ratios = [0.5] * len(pm.units)
    seen = {}

    def fake_time(models, input_size, spec, runs=None):
        seen.update(models=models, input_size=input_size, spec=spec)
        return {"dense": 10.0, "pruned": 6.5}

    monkeypatch.setattr(timing, "time_models", fake_time)
    spec = LatencySpec("torch", batch=4, threads=1, **QUICK)
    assert timing.measured_ratio(pm, ratios, spec) == pytest.approx(0.65)
    assert seen["models"]["dense"] is pm.model and seen["spec"] is spec
    assert seen["input_size"] == pm.input_size
    kept = sum(p.numel() for p in seen["models"]["pruned"].parameters())
    assert kept == pm.cost(ratios)[1] < sum(p.numel() for p in pm.model.parameters())

    pol = make_policy(pm, ratios, "digits_cnn", "latency:0.6", "amc")
    pol.achieved["latency_ratio"] = 0.58
    pol.save(tmp_path / "best_policy.json")
    scorer = SimpleNamespace(pm=pm)
    cfg = SearchConfig(model="digits_cnn", budget="latency:0.6", latency_batch=4,
                       latency_threads=1, out=str(tmp_path))
    for measured, over in ((0.65, True), (0.55, False)):
        said = []
        monkeypatch.setattr(check, "measured_ratio", lambda p, r, s, m=measured: (
            seen.update(ratios=r, spec=s) or m))
        got = check.measure_pick(cfg, scorer, tmp_path, say=said.append)
        assert got["best_latency_ratio_measured"] == measured
        assert seen["ratios"] == pytest.approx(ratios) and seen["spec"].batch == 4
        assert f"{measured:.3f} of the dense latency" in said[0] and "predicted 0.580" in said[0]
        assert ("over it here" in said[0]) is over
    assert check.measure_pick(replace(cfg, budget="flops:0.5"), scorer, tmp_path) == {}
