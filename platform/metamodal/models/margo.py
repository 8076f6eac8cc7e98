"""MARGO (modality reliability guided fusion, ../shared/seeds/margo_modality_reliability.md):
late fusion whose item-specific modality weights are supervised by a reliability vector.

For a triple (u, i, k) and each source s present for item i, the modality-specific margin
d_s = y_s(u, i) - y_s(u, k) says whether s agrees with the BPR objective; the reliability vector
is z = softmax_s(d_s) over the present sources. The confidence γ = σ((ŷ_ui - ŷ_uk) / τ) scales
the weight-calibration loss KL(z ‖ w_i); both z and γ are stop-gradient targets. Two stages:
BPR on the plain sum of the present sources' scores for ``stage1_epochs``, then the learned
weights with BPR + α · calibration.
"""

from __future__ import annotations

import torch

from metamodal.models.late_fusion import LateFusion, LateFusionParams
from metamodal.models.zoo_base import ModelData, bpr_from_scores


class MARGOParams(LateFusionParams):
    alpha: float = 0.01  # weight of the calibration loss
    tau: float = 1.0  # confidence temperature
    stage1_epochs: int = 10


def reliability(d: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """z = softmax over the present sources of the per-source margins d [batch, S]."""
    return torch.softmax(d.masked_fill(~mask, float("-inf")), 1)


def confidence(margin: torch.Tensor, tau: float) -> torch.Tensor:
    return torch.sigmoid(margin / tau)


def calibration_loss(
    w: torch.Tensor, z: torch.Tensor, gamma: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """γ-scaled KL(z ‖ w) over the present sources; z and γ carry no gradient."""
    z, gamma = z.detach(), gamma.detach()
    logw = torch.log(w.clamp_min(1e-12))
    logz = torch.log(z.clamp_min(1e-12))
    kl = (z * (logz - logw)).masked_fill(~mask, 0.0).sum(1)
    return (gamma * kl).mean()


class MARGO(LateFusion):
    name = "margo"
    Params = MARGOParams

    def __init__(self, data: ModelData, params: MARGOParams) -> None:
        super().__init__(data, params.model_copy(update={"weighting": "gated"}))

    @property
    def stage(self) -> int:
        return 1 if self.epoch < self.p.stage1_epochs else 2

    def weights(self, reps: torch.Tensor) -> torch.Tensor:
        """Stage 1: the plain sum of the present sources. Stage 2: the learned distribution
        times the number of present sources, so uniform weights continue stage 1's scores
        exactly (a bare softmax would shrink every score S-fold at the switch)."""
        mask = self.source_mask().float()
        if self.stage == 1:
            return mask
        return super().weights(reps) * mask.sum(1, keepdim=True)

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        s_pos, s_neg, y_pos, y_neg, w_pos, m = self.batch_scores(users, pos, neg)
        loss = bpr_from_scores(y_pos, y_neg) + self.id_reg(users, pos, neg)
        if self.stage == 2:
            z = reliability((s_pos - s_neg).detach(), m)
            gamma = confidence((y_pos - y_neg).detach(), self.p.tau)
            w_dist = w_pos / w_pos.sum(1, keepdim=True)
            loss = loss + self.p.alpha * calibration_loss(w_dist, z, gamma, m)
        return loss
