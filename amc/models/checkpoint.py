"""Reading and writing model checkpoints safely.

Files are read with ``torch.load(weights_only=True)`` unless the user opts out. A pruned
model is saved as a plain state dict plus metadata; loading it into the dense architecture
resizes each conv, BatchNorm and linear layer to the saved shapes (and drops the blocks it
holds dropped), so no pickled code is needed to restore the pruned architecture.
"""

from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from amc.models.cifar import PadShortcut
from amc.models.dropped import DroppedBlock, droppable_blocks
from amc.utils.errors import AmcError
from amc.utils.io import atomic_write

FORMAT = "amc-model/1"


_WARNED: set[str] = set()

# what torch's weights-only unpickler names when it refuses code: a global (class or
# function, e.g. posix.system) or a function it was asked to call
_BLOCKED = (re.compile(r"GLOBAL ([\w.]*\w)"), re.compile(r"unrecognized function (\S+)"))


def read_file(path: str | Path, unsafe_load: bool = False) -> Any:
    """Load a torch file, turning every failure into a one-line :class:`AmcError`.

    Files are loaded weights-only; a file that holds pickled code is refused with the name of
    the blocked global. ``unsafe_load`` unpickles with full Python (after a warning line on
    stderr, once per file), which runs whatever code the file holds.
    """
    p = Path(path)
    if not p.exists():
        raise AmcError(f"checkpoint {str(p)!r} does not exist; pass an existing file")
    if not p.is_file():
        raise AmcError(f"checkpoint {str(p)!r} is not a file; pass a .pt/.th checkpoint file")
    if unsafe_load and str(p) not in _WARNED:
        _WARNED.add(str(p))
        sys.stderr.write(f"amc: warning: --unsafe-load: {p} is unpickled with full Python, "
                         "which runs any code it holds; use it only for files you trust\n")
        sys.stderr.flush()
    try:
        return torch.load(p, map_location="cpu", weights_only=not unsafe_load)
    except pickle.UnpicklingError as e:
        blocked = _blocked_global(e) if not unsafe_load else None
        if blocked:
            raise AmcError(f"{p} holds pickled objects, not only weights: weights-only loading "
                           f"blocked {blocked}; --unsafe-load would run the file's code, so pass "
                           "it only for a file you trust") from e
        raise AmcError(f"{p} is not a PyTorch checkpoint ({_first_line(e)}); pass a .pt/.th "
                       "file") from e
    except Exception as e:  # the unpickler raises KeyError, IndexError, ... on garbage
        raise AmcError(f"{p} could not be read as a PyTorch checkpoint ({_first_line(e)}); "
                       "pass a .pt/.th file") from e


def _blocked_global(e: BaseException) -> str | None:
    """The global (or function) torch's weights-only unpickler refused, if it names one."""
    for pattern in _BLOCKED:
        m = pattern.search(str(e))
        if m:
            return m.group(1)
    return None


def _first_line(e: BaseException, limit: int = 160) -> str:
    """A short reason for a load failure: torch's unpickler detail or the first line, cut at
    a word boundary."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if detail:
        return _shorten(detail.group(1).strip(), limit)
    for line in text.splitlines():
        if line.strip():
            return _shorten(f"{type(e).__name__}: {line.strip()}", limit)
    return type(e).__name__


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters at a word boundary, marked with "..."."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:.") + " ..."


def extract_state_dict(obj: Any, path: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the state dict inside a loaded checkpoint and strip a ``module.`` prefix."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise AmcError(f"{path} holds no state dict of tensors; pass a model checkpoint")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _resize_layer(module: nn.Module, name: str, shape: torch.Size) -> None:
    """Change a layer's attributes so that its parameter ``name`` takes ``shape``."""
    if isinstance(module, nn.Conv2d) and name == "weight":
        depthwise = module.groups > 1 and module.groups == module.in_channels
        module.out_channels = shape[0]
        if depthwise:
            module.groups = module.in_channels = shape[0]
        else:
            module.in_channels = shape[1] * module.groups
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d | nn.LayerNorm | nn.GroupNorm):
        if hasattr(module, "num_features"):
            module.num_features = shape[0]
    elif isinstance(module, nn.Linear) and name == "weight":
        module.out_features, module.in_features = shape[0], shape[1]


def _as_dropped_blocks(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Replace the blocks that a pruned checkpoint holds dropped (a ``shift`` in place of
    their layers: :class:`~amc.models.dropped.DroppedBlock`) by dropped blocks, in place."""
    for name in droppable_blocks(model):
        if f"{name}.shift" in state:
            model.set_submodule(name, DroppedBlock.of(model.get_submodule(name)))


def _as_selection_convs(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Replace the option-A shortcuts whose weights a pruned checkpoint holds (``--units all``
    pruned them as 1x1 selection convs: :func:`~amc.models.cifar.conv_shortcuts`) by such
    convs of the stored shape, in place."""
    modules = dict(model.named_modules())
    for key, value in state.items():
        name, _, attr = key.rpartition(".")
        m = modules.get(name)
        if isinstance(m, PadShortcut) and attr == "weight" and value.dim() == 4:
            model.set_submodule(name, nn.Conv2d(value.shape[1], value.shape[0], 1, m.stride,
                                                bias=False))


def load_state_dict_resizing(model: nn.Module, state: dict[str, torch.Tensor],
                             resize: bool, path: str | Path = "checkpoint",
                             arch: str | None = None) -> None:
    """Copy ``state`` into ``model``; with ``resize`` adopt differing (pruned) shapes.
    ``arch``: the model's name, for the messages.

    Raises:
        AmcError: on missing/unexpected keys or, without ``resize``, the first shape mismatch.
    """
    if resize:
        _as_dropped_blocks(model, state)
        _as_selection_convs(model, state)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        first = (f"missing tensor {missing[0]!r}" if missing
                 else f"unexpected tensor {unexpected[0]!r}")
        raise AmcError(f"{path} does not fit {arch or 'this architecture'} ({first}); pass a "
                       f"checkpoint {_of(arch)}")
    for key, value in state.items():
        if own[key].shape == value.shape:
            continue
        if not resize:
            raise AmcError(f"{path} does not fit {arch or 'this architecture'}: tensor {key!r} has "
                           f"shape {tuple(value.shape)} in the checkpoint but "
                           f"{tuple(own[key].shape)} in the model; pass a checkpoint "
                           f"{_of(arch)}")
        mod_name, _, attr = key.rpartition(".")
        module = model.get_submodule(mod_name)
        _resize_layer(module, attr, value.shape)
        old = getattr(module, attr)
        new = torch.zeros(value.shape, dtype=old.dtype)
        if isinstance(old, nn.Parameter):
            setattr(module, attr, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            module.register_buffer(attr, new)
    model.load_state_dict(state, strict=False)


def _of(arch: str | None) -> str:
    """The fix a checkpoint that does not fit ``arch`` calls for."""
    return f"of {arch} or the --model it was made for" if arch else "of the same model"


def load_into(model: nn.Module, path: str | Path, unsafe_load: bool = False,
              name: str | None = None) -> dict[str, Any]:
    """Load a checkpoint file into ``model`` (named ``name``, for the messages) in place;
    returns the file's metadata (if any). An amc model file made for another model than
    ``name`` that does not fit is refused naming the model it holds."""
    obj = read_file(path, unsafe_load)
    meta: dict[str, Any] = {}
    pruned = isinstance(obj, dict) and obj.get("format") == FORMAT
    if pruned:
        meta = dict(obj.get("meta", {}))
    state = extract_state_dict(obj, path)
    bad = next((k for k, v in state.items() if v.is_floating_point() and bool(v.isnan().any())),
               None)
    if bad is not None:
        raise AmcError(f"checkpoint {path} holds NaN values in {bad!r} (a diverged run?); pass "
                       "a checkpoint with finite weights")
    try:
        load_state_dict_resizing(model, state, resize=pruned, path=path, arch=name)
    except AmcError:
        held = obj.get("model") if pruned else None
        if held and name and held != name:
            raise AmcError(f"{path} holds a {held}, not a {name}; pass --model {held} (or no "
                           "--model: an amc model file names its own)") from None
        raise
    return meta


def save_model(model: nn.Module, path: str | Path, model_name: str,
               meta: dict[str, Any] | None = None) -> Path:
    """Save weights and (pruned) shapes so that ``create_model(name, checkpoint=path)`` restores
    the model without the policy and without pickled code."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_write(path) as tmp:
        torch.save({"format": FORMAT, "model": model_name, "meta": meta or {},
                    "state_dict": state}, tmp)
    return Path(path)


def checkpoint_model_name(path: str | Path, unsafe_load: bool = False) -> str | None:
    """The registry name stored in an amc model file, or None for a plain checkpoint."""
    obj = read_file(path, unsafe_load)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return str(obj.get("model"))
    return None
