"""Pieces the content models share: frozen feature buffers with presence masks, and per-modality
projections into the model's embedding space."""

from __future__ import annotations

import numpy as np
import torch

from metamodal.models.zoo_base import ModelData


class ContentFeatures(torch.nn.Module):
    """Per-modality frozen features [n_items, d_m] (missing rows zero) and presence [n_items].

    Non-persistent buffers: they are data, not weights. A checkpoint carries none of them, so a
    model rebuilt on other features (the agent's masked modalities, a refreshed extraction)
    keeps what it was built with instead of having the training-time features loaded back."""

    def __init__(self, data: ModelData) -> None:
        super().__init__()
        self.names = list(data.features)
        for k, (x, present) in enumerate(data.features.values()):
            x = torch.from_numpy(np.asarray(x, dtype=np.float32))
            self.register_buffer(f"x{k}", x, persistent=False)
            m = torch.from_numpy(np.asarray(present, dtype=bool))
            self.register_buffer(f"m{k}", m, persistent=False)

    def __len__(self) -> int:
        return len(self.names)

    def features(self, k: int) -> torch.Tensor:
        return getattr(self, f"x{k}")

    def present(self, k: int) -> torch.Tensor:
        return getattr(self, f"m{k}")

    def dims(self) -> list[int]:
        return [self.features(k).shape[1] for k in range(len(self))]

    def mask(self) -> torch.Tensor:
        """[n_items, n_modalities] presence."""
        return torch.stack([self.present(k) for k in range(len(self))], 1)


def projection(d_in: int, d_out: int, hidden: int | None = None) -> torch.nn.Module:
    if not hidden:
        return torch.nn.Linear(d_in, d_out)
    return torch.nn.Sequential(
        torch.nn.Linear(d_in, hidden), torch.nn.LeakyReLU(), torch.nn.Linear(hidden, d_out)
    )


def require_content(data: ModelData, model: str) -> None:
    if not data.features:
        raise ValueError(
            f"{model} needs at least one content feature modality; this dataset has none "
            "(pass data.features=<extraction dir> or pick a model that needs only interactions)"
        )
