"""SASRec (Kang & McAuley, 2018): a causal self-attention encoder over the item sequence, the
next item scored by a dot product with the item table. With content modalities it becomes the
multimodal variant (in the spirit of MISSRec/UniSRec): an item's row is its ID embedding plus a
projection of each content feature, and a modality the item lacks — absent in the catalogue,
masked by an evaluation condition, or dropped in training — contributes a learned missing token
instead, so a missing modality is explicit, never a zero vector taken for evidence.

Trained with the full softmax over the catalogue at every position (stronger than the paper's
one sampled negative, and affordable at these catalogue sizes).
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class SASRecParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dim: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    max_len: int = Field(50, ge=2, description="items of history the encoder reads")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    modality_dropout: float = Field(0.3, ge=0.0, lt=1.0, description="training: P(an item's modality is hidden)")  # fmt: skip


def _attention_mask(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[b·heads, L, L] additive: causal, padding keys hidden — but a padding query still sees
    itself, so no row is all -inf (NaN)."""
    b, n = x.shape
    causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
    ok = causal[None] & (x != 0)[:, None, :]
    ok = ok | torch.eye(n, dtype=torch.bool, device=x.device)[None]
    mask = torch.zeros(ok.shape, device=x.device).masked_fill(~ok, float("-inf"))
    return mask.repeat_interleave(heads, 0)


class SASRec(nn.Module):
    """``content``: name → [n_items, dim] features; ``present``: name → [n_items] bool."""

    def __init__(self, n_items: int, p: SASRecParams, content: dict[str, torch.Tensor] | None = None,
                 present: dict[str, torch.Tensor] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.p, self.n_items = p, n_items
        self.item = nn.Embedding(n_items + 1, p.dim, padding_idx=0)
        self.pos = nn.Embedding(p.max_len, p.dim)
        layer = nn.TransformerEncoderLayer(p.dim, p.heads, 2 * p.dim, p.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)  # fmt: skip
        self.blocks = nn.TransformerEncoder(layer, p.layers, enable_nested_tensor=False)
        self.norm, self.drop = nn.LayerNorm(p.dim), nn.Dropout(p.dropout)
        nn.init.normal_(self.item.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.modalities = list(content or {})
        self.proj, self.missing = nn.ModuleDict(), nn.ParameterDict()
        for m in self.modalities:
            x = torch.as_tensor(content[m], dtype=torch.float32)
            self.register_buffer(f"x_{m}", torch.cat([torch.zeros(1, x.shape[1]), x]))
            self.register_buffer(f"present_{m}", torch.cat([torch.zeros(1, dtype=torch.bool),
                                                            torch.as_tensor(present[m], dtype=torch.bool)]))  # fmt: skip
            self.proj[m] = nn.Linear(x.shape[1], p.dim)
            nn.init.normal_(self.proj[m].weight, std=0.02)  # content starts at the IDs' scale,
            nn.init.zeros_(self.proj[m].bias)  # not drowning them
            self.missing[m] = nn.Parameter(torch.randn(p.dim) * 0.02)

    def item_table(self, hidden: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """[n_items + 1, dim]; ``hidden``: name → [n_items + 1] bool, rows whose modality is
        treated as absent on top of the catalogue's own gaps."""
        e = self.item.weight
        for m in self.modalities:
            have = getattr(self, f"present_{m}")
            if hidden is not None and m in hidden:
                have = have & ~hidden[m]
            c = torch.where(have[:, None], self.proj[m](getattr(self, f"x_{m}")), self.missing[m][None])
            e = e + c
        return e

    def encode(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """[b, L] item indices + 1 (0: padding, on the left) → [b, L, dim]."""
        pos = torch.arange(x.shape[1], device=x.device)
        h = self.drop(table[x] * math.sqrt(self.p.dim) + self.pos(pos)[None])
        h = self.blocks(h, mask=_attention_mask(x, self.p.heads))
        return self.norm(h)

    def training_hidden(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Each item's modality hidden with ``modality_dropout``: the missing token learns."""
        q = self.p.modality_dropout
        dev = self.item.weight.device
        return {m: torch.rand(self.n_items + 1, generator=generator).to(dev) < q for m in self.modalities}

    def forward(self, x: torch.Tensor, y: torch.Tensor, hidden: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Mean cross-entropy of the next item over the non-padding positions."""
        table = self.item_table(hidden)
        h = self.encode(x, table)
        keep = y > 0
        logits = h[keep] @ table[1:].T
        return nn.functional.cross_entropy(logits, y[keep] - 1)

    @torch.no_grad()
    def states(self, x: torch.Tensor, hidden: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """[b, dim]: each padded history's state after its last item (a user vector)."""
        return self.encode(x, self.item_table(hidden))[:, -1]

    @torch.no_grad()
    def scores(self, x: torch.Tensor, hidden: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """[b, n_items]: every item's score as the next one after each padded history."""
        return self.states(x, hidden) @ self.item_table(hidden)[1:].T
