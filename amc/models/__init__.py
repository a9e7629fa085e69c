"""Stage 2, models: the registry (``create_model`` / ``list_models``, timm style), the CIFAR
networks, safe checkpoint reading and writing, and fast evaluation."""

from amc.models.cifar import CifarResNet, DigitsCNN, VGGCifar
from amc.models.evaluate import EvalResult, check_model_data, evaluate, top1
from amc.models.registry import ModelSpec, create_model, list_models, model_spec, register

__all__ = ["CifarResNet", "DigitsCNN", "EvalResult", "ModelSpec", "VGGCifar",
           "check_model_data", "create_model", "evaluate", "list_models", "model_spec",
           "register", "top1"]
