"""The one ONNX Runtime session set-up (CPU provider, quiet, explicit thread counts).

Imports neither torch nor onnx, so the peak-memory probe can use it without inflating the
memory it measures.
"""

from __future__ import annotations

from pathlib import Path


def ort_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session of ``path``.

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads (None: ONNX Runtime's default); one inter-op thread.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level, so.inter_op_num_threads = 3, 1
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
