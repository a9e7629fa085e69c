"""amc.utils.ridge: the one ridge least-squares solve, in either form."""

import torch

from amc.utils.ridge import ridge_solve


def test_ridge_solve_is_least_squares_tall_and_least_norm_wide():
    """Tall x: the least-squares fit (pinv) as the ridge vanishes; wide x: the exact fit of
    least norm (pinv too, not just any exact fit); both the ridge regression of their own
    scale (each form checked against the other at the same absolute lam)."""
    g = torch.Generator().manual_seed(0)
    for n, d in ((200, 12), (9, 40)):
        x = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = torch.randn(n, 2, generator=g, dtype=torch.float64)
        w = ridge_solve(x, y, 1e-12)
        ref = torch.linalg.pinv(x) @ y
        assert torch.allclose(w, ref, rtol=0, atol=1e-6 * float(ref.abs().max()))
        w = ridge_solve(x, y, 0.1)
        a = x.T @ x if n >= d else x @ x.T
        lam = 0.1 * float(a.diagonal().mean())
        other = (x.T @ torch.linalg.solve(x @ x.T + lam * torch.eye(n, dtype=x.dtype), y)
                 if n >= d else
                 torch.linalg.solve(x.T @ x + lam * torch.eye(d, dtype=x.dtype), x.T @ y))
        assert torch.allclose(w, other, rtol=0, atol=1e-9 * float(other.abs().max()))
        assert not torch.allclose(w, ref, rtol=0, atol=1e-3 * float(ref.abs().max()))
