"""Stage 3, cost: per-layer and whole-model MACs and parameters (counted once per call), and
the one latency timer (interleaved rounds, PyTorch and ONNX Runtime side by side)."""

from amc.cost.macs import LayerCost, count_params, layer_costs, model_cost
from amc.cost.timing import Latency, measure_latency

__all__ = ["LayerCost", "Latency", "count_params", "layer_costs", "measure_latency",
           "model_cost"]
