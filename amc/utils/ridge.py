"""The one ridge least-squares solve.

Reconstruction refits a pruned conv on many sampled positions (more rows than unknowns:
the normal equations), the warm start moves the actor's last layer to a policy of few units
(fewer rows than unknowns: the least-norm solution); both regularise relative to the scale
of the system they solve.
"""

from __future__ import annotations

import torch


def ridge_solve(x: torch.Tensor, y: torch.Tensor, ridge: float) -> torch.Tensor:
    """``W`` minimising ``|x W - y|^2 + lam |W|^2``, ``lam`` = ``ridge`` times the mean
    diagonal of the system solved: ``x^T x`` (``d x d``) where ``x`` has at least as many rows
    as columns, else ``x x^T`` (``n x n``: ``W = x^T (x x^T + lam I)^-1 y``, the least-norm
    solution as ``ridge`` goes to 0). In ``x``'s dtype and device.

    Args:
        x: ``n x d`` inputs.
        y: ``n x k`` targets.
        ridge: Regularisation relative to the mean diagonal.
    """
    primal = x.shape[0] >= x.shape[1]
    a = x.T @ x if primal else x @ x.T
    a += ridge * a.diagonal().mean() * torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    return torch.linalg.solve(a, x.T @ y) if primal else x.T @ torch.linalg.solve(a, y)
