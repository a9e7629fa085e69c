"""Resource budgets, the uniform ratio that meets one, and AMC's clipping rule.

``flops:0.5`` keeps at most 50 % of the dense MACs; ``params:0.4`` at most 40 % of the
parameters; ``latency:0.6`` at most 60 % of the dense latency predicted by a per-layer
lookup table measured on this machine (:mod:`amc.prune.latency_table`) for a
:class:`~amc.prune.latency_table.LatencySpec` (backend, batch, threads; ``latency=None``: its
defaults, PyTorch at batch 64 with 2 threads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amc.config.blocks import MAX_RATIO
from amc.prune.units import PrunableModel
from amc.utils.bisection import bisect, first_true
from amc.utils.errors import AmcError

if TYPE_CHECKING:
    from amc.prune.latency_table import LatencySpec, LatencyTable

KINDS = ("flops", "params", "latency")


@dataclass(frozen=True)
class Budget:
    """A resource budget.

    Attributes:
        kind: ``flops`` (MACs), ``params`` or ``latency``.
        fraction: Fraction of the dense network's resource that may be kept, in (0, 1].
        latency: Where a ``latency`` budget is measured (None: :class:`LatencySpec`'s
            defaults); every function given this budget uses it.
    """

    kind: str
    fraction: float
    latency: LatencySpec | None = None

    @classmethod
    def parse(cls, text: str, latency: LatencySpec | None = None) -> Budget:
        """Parse ``kind:fraction`` such as ``flops:0.5`` (``latency``: where a latency
        budget is measured)."""
        kind, sep, value = str(text).partition(":")
        try:
            frac = float(value)
        except ValueError:
            frac = -1.0
        if not sep or kind not in KINDS or not 0 < frac <= 1:
            raise AmcError(f"bad budget {text!r}; write kind:fraction with kind in "
                           f"{'/'.join(KINDS)} and 0 < fraction <= 1, e.g. flops:0.5")
        return cls(kind, frac, latency if kind == "latency" else None)

    def __str__(self) -> str:
        return f"{self.kind}:{self.fraction:g}"


def unreachable(error: Exception) -> bool:
    """Whether ``error`` is the refusal of a budget that a strategy cannot reach (as opposed
    to a bad input)."""
    return isinstance(error, AmcError) and ("out of reach" in str(error)
                                            or "unreachable budget" in str(error))


def resource_fn(pm: PrunableModel, budget: Budget, latency: LatencySpec | None = None
                ) -> Callable[[Sequence[float]], float]:
    """Function from per-unit ratios to the budgeted resource as a fraction of dense.

    Args:
        pm: The prunable network.
        budget: The budget whose resource is measured.
        latency: Where ``latency`` budgets are measured (None: :class:`LatencySpec`'s
            defaults); ignored by the other kinds.
    """
    if budget.kind == "flops":
        return lambda r: pm.cost(r)[0] / pm.dense_macs
    if budget.kind == "params":
        return lambda r: pm.cost(r)[1] / pm.dense_params
    from amc.prune.latency_table import LatencySpec

    return (latency or budget.latency or LatencySpec()).table(pm).fraction


def meets(pm: PrunableModel, budget: Budget, ratios: Sequence[float], tol: float = 1e-9,
          latency: LatencySpec | None = None) -> bool:
    """Whether ``ratios`` keep the resource within the budget (``latency``: as in
    :func:`resource_fn`)."""
    return resource_fn(pm, budget, latency)(ratios) <= budget.fraction + tol


def uniform_ratio(pm: PrunableModel, budget: Budget, max_ratio: float = MAX_RATIO,
                  latency: LatencySpec | None = None) -> float:
    """The smallest single ratio for all units that meets ``budget`` (bisection on the exact
    pruned cost; ``latency``: as in :func:`resource_fn`)."""
    f = resource_fn(pm, budget, latency)
    n = len(pm.units)
    if f([max_ratio] * n) > budget.fraction + 1e-9:
        left = f"; {len(pm.left_out)} unit(s) are left out as not prunable exactly" \
            if getattr(pm, "left_out", None) else ""
        hint = (" or use --units all" if pm.mode == "internal"
                and not getattr(pm, "pad_shortcuts", False) else "")
        raise AmcError(f"unreachable budget: {budget} cannot be met even pruning every unit by "
                       f"{max_ratio:g} ({f([max_ratio] * n):.3f} of dense remains{left}); "
                       f"loosen the budget{hint}")
    return bisect(lambda r: f([r] * n) <= budget.fraction, 0.0, max_ratio)


def clip_range(pm: PrunableModel, budget: Budget, chosen: Sequence[float], t: int,
               max_ratio: float, fn: Callable[[Sequence[float]], float] | None = None,
               latency: LatencySpec | None = None) -> tuple[float, float]:
    """AMC's rule: the ratios for unit ``t`` that still let the budget be met.

    The units before ``t`` keep their ``chosen`` ratios and the units after ``t`` are assumed
    to be pruned by ``max_ratio``, the most channel pruning may take; the lower end is the
    smallest ratio for unit ``t`` under which the budget is still reachable. With droppable
    units (a :class:`PrunableModel` with ``drop_blocks``) unit ``t`` may also be dropped
    (:meth:`PrunableModel.top_ratio`), and only where channel pruning of the later units
    cannot reach the budget are they assumed dropped: a drop is then forced as early as the
    budget needs, never piled on the last units (which the first searches with dropped blocks
    did, dropping the third stage's blocks, the most sensitive, whatever the agent chose).

    ``fn`` (the budget's resource function, see :func:`resource_fn`) saves rebuilding it;
    otherwise ``latency`` says where a latency budget is measured.

    Returns:
        (lowest allowed ratio, highest allowed ratio) for unit ``t``.
    """
    f = fn or resource_fn(pm, budget, latency)
    n = len(pm.units)
    head = list(chosen[:t])
    tail = [max_ratio] * (n - t - 1)
    top = pm.top_ratio(t, max_ratio)
    # every resource is a step function of the unit's kept channels: search its steps (the
    # last keeps what the top ratio keeps)
    steps = pm.ratio_steps(t, max_ratio)
    i = first_true(lambda i: f(head + [steps[i]] + tail) <= budget.fraction, len(steps))
    if i == len(steps) and pm.blocks:  # only if the later units drop too
        tail = [pm.top_ratio(u, max_ratio) for u in range(t + 1, n)]
        i = first_true(lambda i: f(head + [steps[i]] + tail) <= budget.fraction, len(steps))
    if i < len(steps):
        return steps[i], top
    if f(head + [top] + tail) > budget.fraction + 1e-9:
        drop = "; dropping every droppable block" if pm.blocks else ""
        raise AmcError(f"budget {budget} is out of reach with max ratio {max_ratio:g}{drop}; "
                       "raise --max-ratio or loosen the budget")
    return top, top


def vector_table(pm: PrunableModel, budget: Budget, fill: bool = True) -> LatencyTable | None:
    """The latency table whose whole vectors a policy at ``budget`` may fill
    (:meth:`~amc.prune.latency_table.LatencyTable.fill`), or None: not a latency budget, ``fill``
    off, or a backend without lanes (ONNX Runtime, a CPU without AVX2)."""
    if not fill or budget.kind != "latency":
        return None
    from amc.prune.latency_table import LatencySpec

    table = (budget.latency or LatencySpec()).table(pm)
    return table if table.lanes > 1 and table.inputs else None


def fill_vectors(pm: PrunableModel, budget: Budget, ratios: Sequence[float],
                 fill: bool = True) -> list[float]:
    """``ratios`` with each unit's kept channels past one CPU vector rounded up to whole
    vectors, unit by unit in forward order while the budget holds (a latency budget only,
    :func:`vector_table`; the latency table charges those channels whole vectors already,
    so a filled unit costs only its BatchNorm's share more). ``ratios`` unchanged else."""
    ratios = list(ratios)
    table = vector_table(pm, budget, fill)
    if table is None:
        return ratios
    for u, r in enumerate(ratios):
        filled = table.fill(u, r)
        if filled != r:
            trial = ratios[:u] + [filled] + ratios[u + 1:]
            if table.fraction(trial) <= budget.fraction + 1e-9:  # the budget's resource
                ratios = trial
    return ratios
