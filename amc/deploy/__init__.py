"""Stage 6, deployment: verified export (ONNX checked in ONNX Runtime, TorchScript, ``.pt``),
INT8 quantization, the checks they share, and the peak-memory probe."""
