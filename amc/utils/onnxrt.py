"""The one ONNX Runtime session set-up (CPU provider, quiet, explicit thread counts).

Imports neither torch nor onnx, so the peak-memory probe can use it without inflating the
memory it measures.
"""

from __future__ import annotations

from pathlib import Path


def ort_session(model: str | Path | bytes, threads: int | None = None, spin: bool = True):
    """An ONNX Runtime CPU session.

    Args:
        model: The ``.onnx`` file, or the serialized model itself.
        threads: Intra-op threads (None: ONNX Runtime's default); one inter-op thread.
        spin: Let idle intra-op threads spin (False: they sleep, so that a session timed
            next is not slowed down by this one's threads).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level, so.inter_op_num_threads = 3, 1
    if threads:
        so.intra_op_num_threads = threads
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
