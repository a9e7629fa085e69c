"""Peak resident memory of one inference, each measured in a fresh Python process.

A probe process imports what its engine needs, records ``ru_maxrss`` (the baseline), loads the
model, runs one forward pass on a random batch and records ``ru_maxrss`` again (the peak). It
prints one JSON line. Run it by hand as::

    python -m amc.deploy.memprobe pytorch resnet56 --checkpoint runs/r56/pruned.pt \
        --input-size 3 32 32
    python -m amc.deploy.memprobe onnxruntime runs/r56/pruned.onnx --input-size 3 32 32

The ``pytorch`` baseline includes torch and the amc model registry; the ``onnxruntime`` baseline
only numpy and onnxruntime (no torch), as a deployment would run it.

Linux carries a parent's peak RSS into ``ru_maxrss`` of a child it forks (the copied address
space's high-water mark is kept across ``exec``), so a probe started by a large process would
report that process's size. The command therefore starts the measuring process from a small
launcher process; ``VmHWM`` (the high-water mark of the process's own address space, from
``/proc/self/status``) is recorded next to ``ru_maxrss`` as a cross-check.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from amc.utils.errors import AmcError

ENGINES = ("pytorch", "onnxruntime")


@dataclass
class Probe:
    """One model to measure.

    Attributes:
        label: Name in the report (``dense``, ``pruned``, ``int8``).
        engine: ``pytorch`` or ``onnxruntime``.
        target: Registry name (pytorch) or ONNX file (onnxruntime).
        checkpoint: Checkpoint file for ``pytorch``.
        num_classes: Class count override for ``pytorch``.
    """

    label: str
    engine: str
    target: str
    checkpoint: str | None = None
    num_classes: int | None = None


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _vmhwm_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def _measure(engine: str, target: str, checkpoint: str | None, num_classes: int | None,
             input_size: tuple[int, ...], batch: int, threads: int) -> dict:
    """Run inside the probe process: baseline after imports, peak after one forward pass."""
    if engine == "pytorch":
        import torch

        from amc.models.registry import create_model

        torch.set_num_threads(threads)
        baseline, base_hwm = _maxrss_mb(), _vmhwm_mb()
        model = create_model(target, num_classes=num_classes, checkpoint=checkpoint)
        x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            out = model(x)
        shape = list(out.shape)
    else:
        import numpy as np

        from amc.utils.onnxrt import ort_session

        baseline, base_hwm = _maxrss_mb(), _vmhwm_mb()
        sess = ort_session(target, threads)
        x = np.random.default_rng(0).standard_normal((batch, *input_size), dtype=np.float32)
        shape = list(sess.run(None, {sess.get_inputs()[0].name: x})[0].shape)
    peak, hwm = _maxrss_mb(), _vmhwm_mb()
    return {"engine": engine, "baseline_mb": round(baseline, 1), "peak_mb": round(peak, 1),
            "delta_mb": round(peak - baseline, 1), "batch": batch, "threads": threads,
            "output_shape": shape, "vmhwm_baseline_mb": base_hwm and round(base_hwm, 1),
            "vmhwm_peak_mb": hwm and round(hwm, 1)}


def run_probes(probes: list[Probe], input_size: tuple[int, ...], batch: int = 64,
               threads: int = 1, timeout: float = 600) -> dict[str, dict]:
    """Measure every probe in its own process (all started at once; only memory is measured).

    Args:
        probes: The models to measure.
        input_size: (C, H, W) of one input.
        batch: Images in the forward pass.
        threads: Intra-op threads of the engine.
        timeout: Seconds to wait for each probe.

    Returns:
        ``"<engine>/<label>"`` -> the probe's JSON line (``baseline_mb``, ``peak_mb``,
        ``delta_mb``, ...).

    Raises:
        AmcError: when a probe process fails.
    """
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    procs = {}
    for p in probes:
        cmd = [sys.executable, "-m", "amc.deploy.memprobe", p.engine, p.target,
               "--batch", str(batch),
               "--threads", str(threads), "--input-size", *map(str, input_size)]
        if p.checkpoint:
            cmd += ["--checkpoint", p.checkpoint]
        if p.num_classes:
            cmd += ["--num-classes", str(p.num_classes)]
        procs[f"{p.engine}/{p.label}"] = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    results = {}
    for key, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AmcError(f"memory probe {key} did not finish in {timeout:g} s") from None
        lines = out.strip().splitlines()
        if proc.returncode != 0 or not lines:
            why = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1][:200]
            raise AmcError(f"memory probe {key} failed ({why})")
        results[key] = json.loads(lines[-1])
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m amc.deploy.memprobe``: prints one JSON line."""
    p = argparse.ArgumentParser(prog="python -m amc.deploy.memprobe",
                                description=__doc__.split("\n")[0])
    p.add_argument("engine", choices=ENGINES)
    p.add_argument("target", help="registry name (pytorch) or ONNX file (onnxruntime)")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--input-size", type=int, nargs="+", required=True)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if not a.child:  # measure in a child of this small process (see the module docstring)
        args = sys.argv[1:] if argv is None else list(argv)
        res = subprocess.run([sys.executable, "-m", "amc.deploy.memprobe", *args, "--child"])
        return res.returncode
    print(json.dumps(_measure(a.engine, a.target, a.checkpoint, a.num_classes,
                              tuple(a.input_size), a.batch, a.threads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
