"""The zoo's shared contrastive loss equals its textbook form: it was rewritten as a cross-entropy
for speed, so DGMRec and LGMRec must train on exactly the loss they had."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from metamodal.models.zoo_base import info_nce


def _reference(a: torch.Tensor, b: torch.Tensor, temp: float, targets: torch.Tensor) -> torch.Tensor:
    """−log softmax of each positive's cosine / temp among all of ``b``, per row."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    pos = (a * b[targets]).sum(1) / temp
    return torch.logsumexp(a @ b.T / temp, 1) - pos


def test_info_nce_equals_logsumexp_minus_the_positive_with_and_without_targets() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 16, generator=g, dtype=torch.float64), torch.randn(64, 16, generator=g, dtype=torch.float64)
    rows = torch.arange(64)
    torch.testing.assert_close(info_nce(a, b, 0.2), _reference(a, b, 0.2, rows).mean())
    every = torch.randn(300, 16, generator=g, dtype=torch.float64)  # LGMRec's form: all users as negatives
    targets = torch.randint(0, 300, (64,), generator=g)
    torch.testing.assert_close(info_nce(a, every, 0.5, targets, "sum"), _reference(a, every, 0.5, targets).sum())
    assert info_nce(a[:0], b, 0.2).item() == 0.0  # no pair (DGMRec: no item with both modalities)
