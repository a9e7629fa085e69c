"""Dataclass configs and the argparse options derived from them (cleanrl style).

Each config is a dataclass whose Google-style docstring has an ``Attributes:`` section; every
field becomes a ``--flag`` with that text as its help, so the CLI and the config never drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from amc.config.blocks import RECAL_ON
from amc.utils.precision import AMP_MODES

T = TypeVar("T")


def _own_docs(cls: type) -> dict[str, str]:
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    docs: dict[str, str] = {}
    in_attrs, current = False, None
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            in_attrs = True
            continue
        if not in_attrs:
            continue
        m = re.match(r"^\s{4}(\w+): (.*)$", line)
        if m:
            current = m.group(1)
            docs[current] = m.group(2).strip()
        elif current and line.startswith(" " * 8):
            docs[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break
    return docs


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> description, read from the ``Attributes:`` sections of the class's
    docstring and of the config blocks it inherits (each field documented where declared)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        docs.update(_own_docs(klass))
    return docs


def _base_type(tp: Any) -> tuple[Any, bool]:
    """Strip ``X | None``; return (type, optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _ordered_fields(cls: type) -> list[dataclasses.Field]:
    """Fields grouped by the block that declares them, the blocks in the order the class
    lists them (dataclasses order them the other way round), the class's own fields last."""
    blocks = cls.__mro__[1:]

    def rank(f: dataclasses.Field) -> int:
        owners = [i for i, c in enumerate(blocks) if f.name in vars(c).get("__annotations__", {})]
        return max(owners) if owners else len(blocks)

    return sorted(dataclasses.fields(cls), key=rank)


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                       prefix: str = "", defaults: dict[str, Any] | None = None,
                       required: tuple[str, ...] = (), shown: dict[str, str] | None = None
                       ) -> None:
    """Add one ``--field-name`` option per dataclass field.

    Args:
        parser: The (sub-)parser.
        cls: The config dataclass; its fields' docs become the help texts.
        skip: Fields that get no option.
        prefix: Prefix of the option names and destinations.
        defaults: Per-command defaults that replace the fields' own; a field without any
            default becomes a required option.
        required: Fields whose option this command requires.
        shown: How these fields' defaults read in the help, where the value alone would
            mislead (a default worked out from other options).

    Options come in the order of the blocks the class lists, its own fields last.
    """
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    defaults = defaults or {}
    for f in _ordered_fields(cls):
        if f.name in skip or f.name.startswith("_") or f.metadata.get("cli") is False:
            continue
        tp, _ = _base_type(hints[f.name])
        flag = "--" + prefix + f.name.replace("_", "-")
        need = f.name in required
        if f.name in defaults:
            default = defaults[f.name]
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default, need = None, True
        text = (shown or {}).get(f.name, default)
        help_ = docs.get(f.name, "") + ("" if need else f" (default: {text})")
        help_ = help_.replace("%", "%%")  # argparse formats help with %: "99 %" is literal
        dest = prefix.replace("-", "_") + f.name
        if tp is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction,
                                default=default, help=help_)
        elif typing.get_origin(tp) is tuple:
            elem = typing.get_args(tp)[0]
            parser.add_argument(flag, dest=dest, nargs="*", default=default, help=help_,
                                required=need, type=elem if elem in (int, float) else None)
        else:
            parser.add_argument(flag, dest=dest, type=tp, default=default, help=help_,
                                required=need)


def from_args(cls: type[T], ns: argparse.Namespace, prefix: str = "", **overrides: Any) -> T:
    """Build ``cls`` from parsed options (``overrides`` win)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = prefix.replace("-", "_") + f.name
        if hasattr(ns, key):
            v = getattr(ns, key)
            if isinstance(v, list):
                v = tuple(v)
            kwargs[f.name] = v
    kwargs.update(overrides)
    return cls(**kwargs)


AT_LEAST: dict[str, int] = {
    "episodes": 1, "warmup_episodes": 0, "workers": 0, "hidden": 1, "batch_size": 1,
    "buffer_episodes": 1, "checkpoint_every": 1, "max_restarts": 0, "cpus_per_worker": 0,
    "gpus_per_worker": 0, "calib_size": 1, "recal_size": 1, "calib_images": 1, "val_size": 1,
    "val_limit": 1, "train_limit": 1, "test_limit": 1, "n_random": 1, "rounds": 1, "runs": 1,
    "latency_runs": 1, "threads": 0, "num_classes": 1, "round_to": 1, "max_retries": 0,
    "prune_every": 1, "warmup_epochs": 0, "input_size": 1, "loader_workers": 0,
    "max_failures": 0, "anchor_every": 0, "rescore_top": 0, "finalists": 0,
    "blocks_finalists": 0, "finalist_images": 1, "finalist_margin_se": 0,
    "envs_per_worker": 1, "seeds": 1, "finetune_runs": 0, "noise_sigma": 0,
}
"""The smallest value of each count and size, by field (and option) name: a name means the
same thing in every config, so one table serves them all."""

POSITIVE = ("epochs", "finetune_epochs", "lr", "time_limit", "kd_temperature",
            "finalist_epochs")
"""Fields that must be above zero."""

UNIT_INTERVAL = ("noise_min", "drop_swap", "pair_moves", "kd_weight", "label_smoothing")
"""Fields that must lie in [0, 1] (a σ in action units, a probability, a loss weight, the
smoothing's share of the target)."""

OPEN_UNIT = ("max_ratio",)
"""Fields that must lie strictly between 0 and 1 (a policy's largest pruning ratio)."""

ONE_OF: dict[str, tuple[str, ...]] = {"amp": AMP_MODES, "score_amp": AMP_MODES,
                                      "envs_on": ("driver", "workers"),
                                      "recal_on": RECAL_ON}
"""Fields whose value must be one of a few words."""


def check_counts(cfg: object) -> None:
    """Fail with one line on the first count or size of ``cfg`` (a config or the parsed
    options) below its minimum, word not among its choices (:data:`ONE_OF`), or setting
    another one excludes (several envs per worker with each env in its own worker); None
    (unset) passes. Called before anything is written.
    """
    from amc.utils.errors import AmcError

    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    for name, lo in AT_LEAST.items():
        v = getattr(cfg, name, None)
        values = v if isinstance(v, list | tuple) else [v]  # e.g. --input-size C H W
        if any(x is not None and not isinstance(x, bool) and x < lo for x in values):
            raise AmcError(f"{flag(name)} must be at least {lo}, got "
                           f"{' '.join(map(str, values))}")
    size = getattr(cfg, "input_size", None)
    if isinstance(size, list | tuple) and len(size) != 3:
        raise AmcError(f"--input-size takes three numbers, C H W; got {' '.join(map(str, size))}")
    for name in POSITIVE:
        v = getattr(cfg, name, None)
        if v is not None and not isinstance(v, bool) and not v > 0:
            raise AmcError(f"{flag(name)} must be positive, got {v}")
    for name in UNIT_INTERVAL:
        v = getattr(cfg, name, None)
        if v is not None and not 0.0 <= v <= 1.0:
            raise AmcError(f"{flag(name)} must be in [0, 1], got {v}")
    for name in OPEN_UNIT:
        v = getattr(cfg, name, None)
        if v is not None and not 0.0 < v < 1.0:
            raise AmcError(f"{flag(name)} must lie in (0, 1), got {v}")
    for name, words in ONE_OF.items():
        v = getattr(cfg, name, None)
        if v is not None and v not in words:
            raise AmcError(f"unknown {flag(name)} {v!r}; use one of {', '.join(words)}")
    per = getattr(cfg, "envs_per_worker", None) or 1
    if getattr(cfg, "envs_on", None) == "workers" and per > 1:
        raise AmcError(f"--envs-per-worker {per} needs the envs on the driver; drop "
                       "--envs-on workers or use --envs-per-worker 1")
    if (getattr(cfg, "time_limit_finalists", False) and getattr(cfg, "time_limit", None) is None
            and not getattr(cfg, "sweep_time_limit", False)):
        raise AmcError("--time-limit-finalists puts the finalists inside the search's time "
                       "limit, and none is set; add --time-limit SECONDS (amc compare: or "
                       "--sweep-time-limit) or drop it")


def load_run_config(cls: type[T], run_dir: str | Path, what: str) -> T:
    """The config of the run in ``run_dir`` (its ``config.json``), for ``--resume``.

    Keys the class no longer has are ignored, so runs made by older versions resume; settings
    added since resume at the value the run was made with (:func:`stored_fields`).

    Args:
        cls: The config dataclass.
        run_dir: The run directory.
        what: The command that made such runs, for the error message (e.g. ``search``).
    """
    from amc.utils.errors import AmcError

    p = Path(run_dir) / "config.json"
    if not p.is_file():
        raise AmcError(f"{run_dir} is not an amc {what} run (no config.json); pass the --out "
                       f"folder of an amc {what} run")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise AmcError(f"{p} is not valid JSON; the run cannot be resumed") from e
    if not isinstance(d, dict) or any(k not in d for k in RUN_MARKERS.get(what, ())):
        raise AmcError(f"{run_dir} is not an amc {what} run (its config.json was made by "
                       f"another command); pass the --out folder of an amc {what} run")
    return cls(**stored_fields(cls, d))


RUN_MARKERS: dict[str, tuple[str, ...]] = {"search": ("episodes", "budget"),
                                           "finetune": ("epochs",)}
"""Settings every run of a command has recorded in its ``config.json`` since the first
version and no other command's run has: ``--resume`` refuses a folder without them."""


def stored_fields(cls: type, stored: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``cls`` a run's ``config.json`` (``stored``) gives: keys the class no
    longer has dropped, settings the run predates at the value it ran with
    (:data:`ADDED_AS_BEFORE`; the others take the class's defaults)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in as_made(stored).items() if k in known}


def as_made(stored: dict[str, Any]) -> dict[str, Any]:
    """A run's stored settings with those it predates at the value it ran with
    (:data:`ADDED_AS_BEFORE`)."""
    return {**{k: v for k, v in ADDED_AS_BEFORE.items() if k not in stored}, **stored}


ADDED_AS_BEFORE: dict[str, object] = {"time_limit": None, "score_amp": "off",
                                      "envs_per_worker": 1, "envs_on": "workers",
                                      "reconstruct_delivered": True,
                                      "sweep_time_limit": False,
                                      "latency_table_method": None, "drop_swap": 0.0,
                                      "drop_blocks": False, "finetune_from": "delivered",
                                      "pair_moves": 0.0, "anchor_every": 10,
                                      "finalists": 0, "blocks_finalists": 0,
                                      "finalist_images": 5000,
                                      "finalist_epochs": 1.0, "fill_vectors": False,
                                      "finalist_margin_se": 0.0,
                                      "time_limit_finalists": False, "anchor_solve": False,
                                      "capacity_weight": 1.0, "recal_on": "calib"}
"""Settings added after runs were cached whose value here reproduces what every earlier run
did (no time limit: all episodes ran; scores in fp32; one env per Ray worker, in the
worker; reconstruction, when on, also in the delivered networks; no search limited to the
sweep's time; no latency table recorded, so that a latency run made before counts as made
with another table than today's; no episode swapping dropped blocks; no block dropped; the
fine-tunes started from the delivered networks; no pair moves; the actor re-fitted every 10
episodes; no finalists fine-tuned; no vectors filled at latency budgets; the finalist best
after the fine-tune kept whatever its lead; the finalists' fine-tunes outside the time
limit; the actor's fits by Adam steps only; the capacity reward's weight, read by no
earlier reward; BatchNorm recalibrated on calibration images): a cached run that predates
one of them counts as made with that value."""


def changed_settings(cfg: object, run_dir: str | Path, ignore: tuple[str, ...] = ("force",)
                     ) -> list[str]:
    """The settings of dataclass ``cfg`` that the run cached in ``run_dir`` was not made with.

    Compares ``cfg`` with the run's ``config.json`` as written (a setting the run predates
    counts as changed, since it ran with that version's behaviour, unless
    :data:`ADDED_AS_BEFORE` gives the value that reproduces it; paths are compared as the
    files they name); empty when they agree.
    """
    stored = as_made(json.loads((Path(run_dir) / "config.json").read_text()))
    now = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    return sorted(k for k in now if k not in ignore
                  and (k not in stored or not _same_setting(stored[k], now[k])))


def _same_setting(a: object, b: object) -> bool:
    """Equal values, or two spellings of one existing file or folder (``../shared/data``
    and ``/work/shared/data``)."""
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str) and Path(a).exists() and Path(b).exists():
        return os.path.samefile(a, b)
    return False
