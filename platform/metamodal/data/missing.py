"""Missing-modality masks: seeded, saved beside the split, applied the same way everywhere.

Three kinds of missingness, combinable:
- item-level: each content modality goes missing for a random fraction of items (on top of
  what the source already lacks); or DGMRec's protocol (``protocol="dgmrec"``): two thirds of
  the items lose content — a quarter of those the first content group only, a quarter the
  second only, half both — drawn separately among warm and cold items;
- cold users: a fraction of evaluated users lose their whole training history (the model trains
  without it); cold items: a fraction of evaluated items lose every training interaction;
- availability patterns over the evidence sources — ``graph`` (history / co-interactions) plus
  each content modality — of which the single-observed-modality ones are the OOMA conditions.

The evaluator still excludes a cold user's withheld training items from its ranking: they are
known non-test interactions, and ranking them would reward memorising what was withheld.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from metamodal.data.dataset import Dataset
from metamodal.data.splits import Split
from metamodal.rundir.base import load_arrays, save_arrays

GRAPH = "graph"


DGMREC_FRAC = 2 / 3  # of items that lose content under DGMRec's protocol


class MissingSpec(BaseModel):
    """Item-level modality drop rates and cold users/items, applied to training and evaluation
    alike (a zoo run's ``missing`` section; the reference baselines' and the demo's spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    item_rates: dict[str, float] = Field({}, description="item-level drop rate per modality, MODALITY=RATE (repeatable)")  # fmt: skip
    cold_user_frac: float = Field(0.0, description="share of users whose history is withheld")
    cold_item_frac: float = Field(0.0, description="share of items never seen in training")
    seed: int = Field(0, description="seed of the split and of the masks")
    protocol: Literal["rates", "dgmrec"] = Field("rates", description="dgmrec: DGMRec's 2/3-of-items masks")  # fmt: skip

    @field_validator("item_rates", mode="before")
    @classmethod
    def _items(cls, v: Any) -> Any:
        """A command line gives ``["text=0.3", ...]``; a config file gives a mapping."""
        if not isinstance(v, list):
            return v
        bad = [x for x in v if not isinstance(x, str) or x.count("=") != 1]
        if bad:
            raise ValueError(f"expected MODALITY=RATE, got {bad[0]!r}")
        return {k: r for k, _, r in (x.partition("=") for x in v)}

    @model_validator(mode="after")
    def _rates(self) -> MissingSpec:
        if self.protocol == "dgmrec" and self.item_rates:
            raise ValueError("missing protocol 'dgmrec' draws its own item masks: give no item_rates")
        rates = {**self.item_rates, "cold_user_frac": self.cold_user_frac, "cold_item_frac": self.cold_item_frac}
        for name, r in rates.items():
            if not 0.0 <= r <= 1.0:
                raise ValueError(f"missing rate for '{name}' must be in [0, 1], got {r}")
        return self

    @property
    def active(self) -> bool:
        """Whether this spec removes anything at all."""
        return bool(self.item_rates or self.cold_item_frac or self.cold_user_frac or self.protocol != "rates")


@dataclass
class Missingness:
    spec: MissingSpec
    present: dict[str, np.ndarray]  # modality -> bool [n_items], source presence AND not dropped
    cold_users: np.ndarray  # bool [n_users]
    cold_items: np.ndarray  # bool [n_items]

    def train_indices(self, ds: Dataset, split: Split) -> np.ndarray:
        """The split's train interactions minus those of cold users and cold items."""
        u, i = ds.interactions.user[split.train], ds.interactions.item[split.train]
        return split.train[~(self.cold_users[u] | self.cold_items[i])]

    def summary(self) -> dict:
        return {
            "spec": self.spec.model_dump(),
            "present": {k: int(v.sum()) for k, v in self.present.items()},
            "cold_users": int(self.cold_users.sum()),
            "cold_items": int(self.cold_items.sum()),
        }

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays = {"cold_users": self.cold_users, "cold_items": self.cold_items,
                  **{f"present__{k}": v for k, v in self.present.items()}}  # fmt: skip
        save_arrays(d / "missing.npz", d / "missing.json", arrays, self.summary())
        return d

    @staticmethod
    def saved(directory: str | Path) -> bool:
        """Whether whole masks were saved there (``missing.json`` is written last)."""
        return (Path(directory) / "missing.json").is_file()

    @classmethod
    def load(cls, directory: str | Path) -> Missingness:
        d = Path(directory)
        meta, arr = load_arrays(d / "missing.npz", d / "missing.json")
        present = {k.split("__", 1)[1]: arr[k] for k in arr.files if k.startswith("present__")}
        return cls(MissingSpec(**meta["spec"]), present, arr["cold_users"], arr["cold_items"])


def make_missingness(ds: Dataset, split: Split, spec: MissingSpec) -> Missingness:
    """Draw the masks. Cold users/items are drawn among those that appear in valid/test, so
    that each cold slice has something to evaluate."""
    rng = np.random.default_rng(spec.seed)
    unknown = set(spec.item_rates) - set(ds.modalities)
    if unknown:
        raise ValueError(
            f"missing rates name unknown modalities {sorted(unknown)}; have {sorted(ds.modalities)}"
        )
    present = {}
    for name, mod in ds.modalities.items():  # one draw per modality, in a fixed order
        drop = rng.random(ds.n_items) < spec.item_rates.get(name, 0.0)
        present[name] = mod.present & ~drop
    held = np.concatenate([split.valid, split.test])
    cold_users = np.zeros(ds.n_users, dtype=bool)
    cold_items = np.zeros(ds.n_items, dtype=bool)
    for mask, ids, frac in (
        (cold_users, ds.interactions.user[held], spec.cold_user_frac),
        (cold_items, ds.interactions.item[held], spec.cold_item_frac),
    ):
        cand = np.unique(ids)
        k = int(round(frac * len(cand)))
        mask[rng.choice(cand, size=k, replace=False)] = True
    if spec.protocol == "dgmrec":
        present = dgmrec_present(ds, cold_items, spec.seed)
    return Missingness(spec, present, cold_users, cold_items)


def content_groups(ds: Dataset) -> dict[str, list[str]]:
    """Content kind (text, image, audio, …) -> its modalities, in the dataset's order."""
    out: dict[str, list[str]] = {}
    for name, mod in ds.modalities.items():
        out.setdefault(mod.kind, []).append(name)
    return out


def dgmrec_present(ds: Dataset, cold_items: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """DGMRec's masks over the first two content groups: within warm and within cold items
    separately (so coldness and missingness are independent), ``DGMREC_FRAC`` of the items lose
    content — a quarter of them group A only, a quarter group B only, half both."""
    groups = content_groups(ds)
    if len(groups) < 2:
        raise ValueError(f"missing protocol 'dgmrec' needs two content groups; {ds.name} has {sorted(groups)}")
    (ga, a_mods), (gb, b_mods) = list(groups.items())[:2]
    rng = np.random.default_rng([seed, 17])
    lose_a, lose_b = np.zeros(ds.n_items, bool), np.zeros(ds.n_items, bool)
    for stratum in (np.flatnonzero(~cold_items), np.flatnonzero(cold_items)):
        hit = rng.permutation(stratum)[: int(round(DGMREC_FRAC * len(stratum)))]
        q = len(hit) // 4
        lose_a[hit[:q]] = lose_b[hit[q : 2 * q]] = True
        lose_a[hit[2 * q :]] = lose_b[hit[2 * q :]] = True
    out = {}
    for name, mod in ds.modalities.items():
        lose = lose_a if name in a_mods else lose_b if name in b_mods else np.zeros(ds.n_items, bool)
        out[name] = mod.present & ~lose
    return out


def evidence_sources(ds: Dataset) -> list[str]:
    """``graph`` plus every content modality: what an availability pattern ranges over."""
    return [GRAPH, *ds.modalities]


def availability_patterns(sources: list[str]) -> list[tuple[str, ...]]:
    """All non-empty subsets of the evidence sources, smallest first."""
    return [c for r in range(1, len(sources) + 1) for c in itertools.combinations(sources, r)]


def ooma_patterns(sources: list[str]) -> list[tuple[str, ...]]:
    """The single-observed-modality conditions."""
    return [(s,) for s in sources]


def mask_for_pattern(
    ds: Dataset, pattern: tuple[str, ...], base: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Per-item presence under an availability pattern: unobserved modalities absent everywhere."""
    base = base or {k: m.present for k, m in ds.modalities.items()}
    unknown = set(pattern) - {GRAPH, *base}
    if unknown:
        raise ValueError(f"pattern names unknown modalities {sorted(unknown)}")
    return {k: (v if k in pattern else np.zeros_like(v)) for k, v in base.items()}
