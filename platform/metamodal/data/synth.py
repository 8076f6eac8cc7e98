"""The embedded default catalog: a synthetic shop with planted, modality-specific tastes.

Why synthetic: the missing-modality checks need to know which modality carries the evidence
for each interaction. Here we plant it.

Items (``n_items``, default 3,000) have:
- category (6; in text, metadata and as the image's shape) — evidence every modality shares;
- colour (8) and pattern (4) — drawn in the image, never written in the text;
- material (6) and style (5) — written in the text (with synonyms, dropouts and typos), never drawn;
- collection (40 latent groups, independent of all content) — visible only through who buys
  what together (the interaction graph);
- brand and price — metadata only, pure nuisance.

Users (``n_users``, default 2,000) are one third each of three kinds:
- ``visual``: strong taste for one colour (+1.0) and one pattern (+0.6), weight 3.0;
- ``textual``: strong taste for one material (+1.0) and one style (+0.6), weight 3.0;
- ``collaborative``: strong taste for two collections (+1.6), weight 3.0;
each with weight 0.3 on the other two kinds' attributes, a mild category preference (+0.8) and
a popularity bias (+0.4 · z-scored log popularity). A user buys the top ``n_u`` items (10 plus a
geometric draw, at most 60) of utility + Gumbel noise, at increasing timestamps.

Raw modalities go missing on purpose: 5% of items have no image, 1% a truncated (corrupt)
JPEG, 8% an empty or absent description — exactly the inputs the extraction job must survive.

Ground truth goes to ``planted/items.csv`` and ``planted/users.csv``; ``CATALOG.md`` repeats
this text. Everything is deterministic in ``seed``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from metamodal.data.synth_images import COLOURS, PATTERNS, SHAPES, render

CATEGORIES = {
    "mug": ["mug", "cup", "tumbler"],
    "cushion": ["cushion", "pillow", "throw pillow"],
    "lamp": ["lamp", "light", "lantern"],
    "vase": ["vase", "planter", "vessel"],
    "ornament": ["ornament", "figurine", "decoration"],
    "rug": ["rug", "mat", "carpet"],
}
SHAPE_OF = dict(
    zip(CATEGORIES, ("circle", "square", "triangle", "hexagon", "star", "diamond"), strict=True)
)
assert set(SHAPE_OF.values()) == set(SHAPES)
MATERIALS = {
    "wool": ["wool", "woollen", "merino wool", "knitted wool"],
    "leather": ["leather", "full-grain leather", "tanned hide", "suede"],
    "ceramic": ["ceramic", "stoneware", "porcelain", "glazed clay"],
    "bamboo": ["bamboo", "woven bamboo", "cane", "rattan"],
    "linen": ["linen", "washed linen", "flax", "natural linen"],
    "steel": ["steel", "brushed steel", "stainless steel", "metal"],
}
STYLES = {
    "vintage": ["vintage", "retro", "old-school", "heritage"],
    "minimalist": ["minimalist", "clean-lined", "understated", "pared-back"],
    "bohemian": ["bohemian", "boho", "eclectic", "free-spirited"],
    "industrial": ["industrial", "urban", "loft-style", "utilitarian"],
    "scandinavian": ["scandinavian", "nordic", "hygge", "scandi"],
}
FILLERS = [
    "Ships in two days.",
    "A favourite with our customers.",
    "Makes a thoughtful gift.",
    "Easy to clean.",
    "Limited stock.",
    "Designed in our studio.",
    "Fits any room.",
    "Handle with care.",
    "Part of our new season.",
    "Built to last.",
]
TEMPLATES = [
    "{Style} {category} in {material}. {f1}",
    "This {material} {category} has a {style} feel. {f1} {f2}",
    "{f1} A {style} piece: {material} {category}.",
    "{Material} {category}, {style} through and through. {f2}",
]
BRANDS = [f"brand{b:02d}" for b in range(25)]
N_COLLECTIONS = 40
USER_KINDS = ("visual", "textual", "collaborative")


class SynthConfig(BaseModel):
    """The generated shop's size and noise (``metamodal data synth`` and the demo's flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    n_items: int = Field(3000, ge=10, description="items in the catalogue")
    n_users: int = Field(2000, ge=10, description="users")
    seed: int = Field(0, description="seed of everything drawn")
    image_size: int = Field(64, ge=16, description="image side in pixels")
    p_no_image: float = Field(0.05, ge=0, le=1, description="share of items with no image")
    p_corrupt_image: float = Field(0.01, ge=0, le=1, description="share with an unreadable image")
    p_no_text: float = Field(0.08, ge=0, le=1, description="share of items with no text")
    primary_weight: float = Field(3.0, description="weight of a user's own kind of taste")
    secondary_weight: float = Field(0.3, description="weight of the other kinds' attributes")


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 4:
        return word
    k = int(rng.integers(1, len(word) - 2))
    return word[:k] + word[k + 1] + word[k] + word[k + 2 :]


def describe(
    category: str, material: str | None, style: str | None, rng: np.random.Generator
) -> str:
    """A noisy description: synonyms, sometimes no material or no style, dropouts, typos."""
    mat = rng.choice(MATERIALS[material]) if material else "quality"
    sty = rng.choice(STYLES[style]) if style else "timeless"
    f1, f2 = rng.choice(FILLERS, size=2, replace=False)
    text = str(rng.choice(TEMPLATES)).format(
        category=rng.choice(CATEGORIES[category]),
        material=mat,
        Material=mat.capitalize(),
        style=sty,
        Style=sty.capitalize(),
        f1=f1,
        f2=f2,
    )
    words = [
        (_typo(w, rng) if rng.random() < 0.03 else w) for w in text.split() if rng.random() > 0.04
    ]
    return " ".join(words)


def _items(cfg: SynthConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = cfg.n_items
    df = pd.DataFrame(
        {
            "id": [f"P{i:05d}" for i in range(n)],
            "category": rng.choice(list(CATEGORIES), n),
            "colour": rng.choice(list(COLOURS), n),
            "pattern": rng.choice(PATTERNS, n),
            "material": rng.choice(list(MATERIALS), n),
            "style": rng.choice(list(STYLES), n),
            "collection": rng.integers(0, N_COLLECTIONS, n),
            "brand": rng.choice(BRANDS, n),
            "log_popularity": rng.normal(0, 1, n),
        }
    )
    base = df["category"].map({c: 10 + 8 * k for k, c in enumerate(CATEGORIES)}).to_numpy()
    df["price"] = np.round(base * np.exp(rng.normal(0, 0.35, n)), 2)
    return df


def _users(cfg: SynthConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = cfg.n_users
    favs = rng.integers(0, N_COLLECTIONS, (n, 2))
    return pd.DataFrame(
        {
            "user_id": [f"U{u:05d}" for u in range(n)],
            "kind": np.array(USER_KINDS)[np.arange(n) % 3],
            "colour": rng.choice(list(COLOURS), n),
            "pattern": rng.choice(PATTERNS, n),
            "material": rng.choice(list(MATERIALS), n),
            "style": rng.choice(list(STYLES), n),
            "collection_a": favs[:, 0],
            "collection_b": favs[:, 1],
            "category": rng.choice(list(CATEGORIES), n),
            # a user never has more than half the catalogue (a small shop stays samplable)
            "n_interactions": np.minimum(10 + rng.geometric(1 / 15, n) - 1,
                                         min(60, cfg.n_items // 2)),  # fmt: skip
        }
    )


def utilities(items: pd.DataFrame, users: pd.DataFrame, cfg: SynthConfig) -> np.ndarray:
    """The planted user × item utility (without noise)."""

    def eq(col: str) -> np.ndarray:
        return (users[col].to_numpy()[:, None] == items[col].to_numpy()[None, :]).astype(np.float32)

    visual = eq("colour") + 0.6 * eq("pattern")
    textual = eq("material") + 0.6 * eq("style")
    coll = items["collection"].to_numpy()[None, :]
    collab = 1.6 * (
        (coll == users["collection_a"].to_numpy()[:, None])
        | (coll == users["collection_b"].to_numpy()[:, None])
    )
    kinds = users["kind"].to_numpy()[:, None]
    w = {k: np.where(kinds == k, cfg.primary_weight, cfg.secondary_weight) for k in USER_KINDS}
    pop = items["log_popularity"].to_numpy()
    pop = (pop - pop.mean()) / pop.std()
    return (
        w["visual"] * visual
        + w["textual"] * textual
        + w["collaborative"] * collab
        + 0.8 * eq("category")
        + 0.4 * pop[None, :]
    ).astype(np.float32)


def _interactions(
    items: pd.DataFrame, users: pd.DataFrame, cfg: SynthConfig, rng: np.random.Generator
) -> pd.DataFrame:
    util = utilities(items, users, cfg)
    noisy = util + rng.gumbel(0, 1, util.shape).astype(np.float32)
    rows = []
    t0 = 1_704_067_200  # 2024-01-01 UTC
    for u, n_u in enumerate(users["n_interactions"].to_numpy()):
        picks = np.argpartition(-noisy[u], n_u)[:n_u]
        picks = rng.permutation(picks)
        ranks = np.argsort(np.argsort(-util[u, picks]))
        ts = (
            t0
            + int(rng.integers(0, 200 * 86400))
            + np.cumsum(rng.exponential(2 * 86400, n_u)).astype(np.int64)
        )
        for j, (i, r, t) in enumerate(zip(picks, ranks, ts, strict=True)):
            rating = 5 if r < n_u / 3 else (4 if r < 2 * n_u / 3 else 3)
            rows.append((users["user_id"].iat[u], items["id"].iat[i], rating, int(t) + j))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def generate(out: str | Path, cfg: SynthConfig | None = None, progress: bool = True) -> Path:
    """Write the catalog in the generic format to ``out`` and return the path."""
    cfg = cfg or SynthConfig()
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "planted").mkdir(exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    items, users = _items(cfg, rng), _users(cfg, rng)
    fate = rng.random(cfg.n_items)
    text_fate = rng.random(cfg.n_items)
    with open(out / "items.jsonl", "w") as f:
        for i, it in enumerate(items.itertuples(index=False)):
            f.write(json.dumps(_item_record(it, i, fate[i], text_fate[i], cfg, out)) + "\n")
            if progress and (i + 1) % 1000 == 0:
                print(f"  synth: {i + 1}/{cfg.n_items} items rendered", flush=True)
    inter = _interactions(items, users, cfg, rng)
    inter.to_csv(out / "interactions.csv", index=False)
    image_state = np.where(fate < cfg.p_no_image, "absent",
                           np.where(fate < cfg.p_no_image + cfg.p_corrupt_image, "corrupt", "ok"))  # fmt: skip
    items.assign(image_state=image_state, text_state=np.where(text_fate < cfg.p_no_text, "absent", "ok")
                 ).to_csv(out / "planted" / "items.csv", index=False)  # fmt: skip
    users.to_csv(out / "planted" / "users.csv", index=False)
    schema = {"name": "synthetic-shop", "id_field": "id", "text_fields": ["text"], "image_field": "image",
              "user_field": "user_id", "item_field": "item_id"}  # fmt: skip
    (out / "catalog.json").write_text(json.dumps(schema, indent=2))
    (out / "CATALOG.md").write_text(
        "# Synthetic shop (MetaModal embedded default)\n\n"
        + (__doc__ or "").split("\n\n", 1)[1]
        + f"\n\nGenerated with: `{json.dumps(cfg.model_dump())}`\n"
    )
    if progress:
        print(f"  synth: {len(items)} items, {len(users)} users, {len(inter)} interactions -> {out}",
              flush=True)  # fmt: skip
    return out


def _item_record(it, i: int, fate: float, text_fate: float, cfg: SynthConfig, out: Path) -> dict:
    """One item's catalogue record; its image rendered (and maybe truncated) under ``out``.
    ``fate``/``text_fate`` plant what is missing: no field, empty text, corrupt image."""
    irng = np.random.default_rng([cfg.seed, i])
    rec = {"id": it.id, "title": f"{it.brand} {it.category} {it.id}", "category": it.category,
           "brand": it.brand, "price": float(it.price)}  # fmt: skip
    if text_fate < cfg.p_no_text / 2:
        pass  # no text field at all
    elif text_fate < cfg.p_no_text:
        rec["text"] = "   "  # present but empty: counts as missing
    else:
        material = it.material if irng.random() > 0.1 else None
        style = it.style if irng.random() > 0.1 else None
        rec["text"] = describe(it.category, material, style, irng)
    if fate >= cfg.p_no_image:
        path = out / "images" / f"{it.id}.jpg"
        render(SHAPE_OF[it.category], it.colour, it.pattern, irng, cfg.image_size).save(path, quality=90)
        if fate < cfg.p_no_image + cfg.p_corrupt_image:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 3])
        rec["image"] = f"images/{it.id}.jpg"
    return rec
