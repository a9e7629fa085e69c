"""The embedded dense model: ``digits_cnn`` trained on scikit-learn's 8x8 digits (no files, no
network), for the demo, the tests and the benchmarks that need a small trained network."""

from __future__ import annotations

from pathlib import Path

import torch

from amc.data.datasets import load_dataset
from amc.models.checkpoint import save_model
from amc.models.registry import create_model
from amc.train.loop import TrainConfig, train


def train_digits(out: Path, seed: int = 0, epochs: int = 30) -> Path:
    """Train ``digits_cnn`` on the embedded digits data; returns the checkpoint path."""
    torch.manual_seed(seed)
    data = load_dataset("digits", seed=seed)
    model = create_model("digits_cnn")
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, warmup_epochs=1, seed=seed,
                      eval_splits=())
    train(model, data, cfg)
    return save_model(model, out / "digits_cnn.pt", "digits_cnn", {"trained_on": "digits"})
