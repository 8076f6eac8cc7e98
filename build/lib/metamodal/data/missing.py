"""Missing-modality masks: seeded, saved beside the split, applied the same way everywhere.

Three kinds of missingness, combinable:
- item-level: each content modality goes missing for a random fraction of items (on top of
  what the source already lacks);
- cold users: a fraction of evaluated users lose their whole training history (the model trains
  without it); cold items: a fraction of evaluated items lose every training interaction;
- availability patterns over the evidence sources — ``graph`` (history / co-interactions) plus
  each content modality — of which the single-observed-modality ones are the OOMA conditions.

The evaluator still excludes a cold user's withheld training items from its ranking: they are
known non-test interactions, and ranking them would reward memorising what was withheld.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from metamodal.data.dataset import Dataset
from metamodal.data.splits import Split

GRAPH = "graph"


@dataclass
class MissingSpec:
    item_rates: dict[str, float] = field(default_factory=dict)
    cold_user_frac: float = 0.0
    cold_item_frac: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name, r in {
            **self.item_rates,
            "cold_user_frac": self.cold_user_frac,
            "cold_item_frac": self.cold_item_frac,
        }.items():
            if not 0.0 <= r <= 1.0:
                raise ValueError(f"missing rate for '{name}' must be in [0, 1], got {r}")


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
            "spec": asdict(self.spec),
            "present": {k: int(v.sum()) for k, v in self.present.items()},
            "cold_users": int(self.cold_users.sum()),
            "cold_items": int(self.cold_items.sum()),
        }

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            d / "missing.npz",
            cold_users=self.cold_users,
            cold_items=self.cold_items,
            **{f"present__{k}": v for k, v in self.present.items()},
        )
        (d / "missing.json").write_text(json.dumps(self.summary(), indent=2))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Missingness:
        d = Path(directory)
        meta = json.loads((d / "missing.json").read_text())
        arr = np.load(d / "missing.npz")
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
    return Missingness(spec, present, cold_users, cold_items)


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
