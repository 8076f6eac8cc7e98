"""A catalogue seen through trained alignment heads (``metamodal align --mode heads``): every
item's text and image features projected into the one shared space.

Two readers: the agent's ``cross_modal`` tool (a history's images against candidates' texts and
the reverse — evidence exactly when one side lacks the modality the other has), and Serve's
cold-start image queries, which search the items in that space so a query image reaches items
that have only a text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from metamodal.data import Dataset
from metamodal.data.modalities import FeatureModality

SHARED = "shared"  # a content query's modality once projected: scored by ``SharedSpace.item_scores``
IMAGE_SHARED, TEXT_SHARED = "image_shared", "text_shared"


class Heads(torch.nn.Module):
    """One MLP per modality into the shared space, and CLIP's learnt temperature."""

    def __init__(self, d_text: int, d_image: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.text = torch.nn.Sequential(torch.nn.Linear(d_text, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, dim))
        self.image = torch.nn.Sequential(torch.nn.Linear(d_image, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, dim))
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(self.text(text), dim=-1), F.normalize(self.image(image), dim=-1)


def load_heads(path: str | Path) -> tuple[Heads, dict]:
    """The saved heads (eval mode) and what they read: ``{"text": name, "image": name}``."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    heads = Heads(saved["dims"]["text"], saved["dims"]["image"], saved["dims"]["dim"], saved["dims"]["hidden"])
    heads.load_state_dict(saved["state"])
    return heads.eval(), saved["modalities"]


@dataclass(frozen=True)
class SharedSpace:
    heads: Heads
    reads: dict[str, str]  # "text" / "image" -> the feature modality the heads read
    rows: dict[str, tuple[np.ndarray, np.ndarray]]  # IMAGE_SHARED / TEXT_SHARED -> (unit rows, present)

    def groups(self, ds: Dataset) -> dict[str, str]:
        """Each projected modality's evidence group: its source's (masking it masks them)."""
        return {IMAGE_SHARED: ds.modalities[self.reads["image"]].kind,
                TEXT_SHARED: ds.modalities[self.reads["text"]].kind}  # fmt: skip

    def item_scores(self, q: np.ndarray) -> np.ndarray:
        """Every item's score for a query already in the space: per modality the cosine,
        standardised over the items that have that modality, then averaged over the item's
        modalities (−inf with neither). Why standardised: within-modality cosines run higher
        than cross-modal ones, so a raw mean (or an item's mean vector) ranks every item with
        the query's own modality above every item without it — an image query would never
        reach a text-only item."""
        q = np.asarray(q, np.float64).reshape(-1)
        parts = []
        for rows, has in self.rows.values():
            s = rows @ q
            mu, sd = (s[has].mean(), s[has].std()) if has.any() else (0.0, 1.0)
            parts.append(np.where(has, (s - mu) / max(float(sd), 1e-12), np.nan))
        x = np.stack(parts)
        n = (~np.isnan(x)).sum(0)
        return np.where(n > 0, np.nansum(x, 0) / np.maximum(n, 1), -np.inf)


def project(head: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Features of one encoder (``[n, d]``) into the shared space through its head: unit rows."""
    with torch.no_grad():
        out = head(torch.as_tensor(np.asarray(x, np.float32))).numpy().astype(np.float64)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)  # float64: scores rank stably


def heads_file(path: str | Path) -> Path:
    """A heads run directory or its ``heads.pt``."""
    return Path(path) / "heads.pt" if Path(path).is_dir() else Path(path)


def shared_space(ds: Dataset, heads_path: str | Path) -> SharedSpace:
    """Project ``ds``'s features through the heads at ``heads_path`` (a heads run directory or
    its ``heads.pt``). The dataset must hold the features the heads were trained on: a heads
    run over one extraction applied to another's features is an error naming both."""
    heads, reads = load_heads(heads_file(heads_path))
    space = SharedSpace(heads, reads, {})
    for kind, name in reads.items():
        mod = ds.modalities.get(name)
        if not isinstance(mod, FeatureModality):
            have = sorted(n for n, m in ds.modalities.items() if isinstance(m, FeatureModality))
            raise ValueError(f"{heads_path}: the heads read the {kind} features {name!r}, which this "
                             f"dataset does not have (its features: {have}); use the extraction run "
                             "the heads were trained on")  # fmt: skip
        want = heads.text[0].in_features if kind == "text" else heads.image[0].in_features
        if mod.features.shape[1] != want:
            raise ValueError(f"{heads_path}: {name!r} has {mod.features.shape[1]} dimensions, the "
                             f"heads were trained on {want}")  # fmt: skip
        rows = project(heads.text if kind == "text" else heads.image, mod.features)
        rows[~mod.present] = 0.0
        space.rows[TEXT_SHARED if kind == "text" else IMAGE_SHARED] = (rows, mod.present.copy())
    return space
