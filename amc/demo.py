"""The embedded demo: train the digits CNN, then (when the RL side is installed) compress it."""

from __future__ import annotations

from pathlib import Path

import torch

from amc.checkpoint import save_model
from amc.cost import model_cost
from amc.data import load_dataset
from amc.evaluate import evaluate
from amc.models import create_model
from amc.train import TrainConfig, train


def train_digits(out: Path, seed: int = 0, epochs: int = 30) -> Path:
    """Train ``digits_cnn`` on the embedded digits data; returns the checkpoint path."""
    torch.manual_seed(seed)
    data = load_dataset("digits", seed=seed)
    model = create_model("digits_cnn")
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, warmup_epochs=1, seed=seed,
                      eval_splits=())
    train(model, data, cfg)
    return save_model(model, out / "digits_cnn.pt", "digits_cnn", {"trained_on": "digits"})


def run_demo(out: Path, episodes: int = 100, seed: int = 0) -> None:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = train_digits(out, seed)
    model = create_model("digits_cnn", checkpoint=ckpt)
    data = load_dataset("digits", seed=seed)
    macs, params = model_cost(model, data.input_size)
    for split in ("val", "test"):
        r = evaluate(model, *data.tensors(split))
        print(f"digits_cnn dense  {split:5s} top-1 {r.top1:6.2f}%  top-5 {r.top5:6.2f}%")
    print(f"digits_cnn dense  MACs {macs / 1e6:.3f}M  params {params / 1e3:.1f}K  -> {ckpt}")
