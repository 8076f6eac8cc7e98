"""CLIP domain alignment on Ray Train: pairs and co-interaction partners, a short real run whose
checkpoint the extraction job then uses (architecture read from the sidecar)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metamodal.data import Dataset, Interactions
from metamodal.extract.align_data import co_partners


def test_co_partners_rank_by_co_consumption_and_skip_held_out() -> None:
    # users: u0 buys items 0,1,2; u1 buys 0,1; u2 buys 0,3. Item 2 is held out.
    user = np.array([0, 0, 0, 1, 1, 2, 2])
    item = np.array([0, 1, 2, 0, 1, 0, 3])
    ds = Dataset(
        name="t",
        format="generic",
        path="mem",
        user_ids=np.array(["u0", "u1", "u2"]),
        item_ids=np.array(["i0", "i1", "i2", "i3"]),
        interactions=Interactions(user=user, item=item),
    )
    items = np.arange(4)
    train = np.array([True, True, False, True])
    p = co_partners(ds, items, train, k=3)
    assert p[0].tolist() == [1, 3, -1]  # i1 twice, i3 once; i2 is held out, never a partner
    assert p[2].tolist() == [0, 1, -1] and p[3].tolist() == [0, -1, -1]
    only_u2 = co_partners(ds, items, train, k=3, idx=np.array([5, 6]))
    assert only_u2[0].tolist() == [3, -1, -1]  # restricted to the given interactions


def test_a_pair_cap_draws_a_seeded_subset_and_counts_the_rest(small_shop: Path, tmp_path: Path) -> None:
    """``max_pairs`` (the quick pipeline's bounded budget): that many pairs, a subset of the
    uncapped ones in item order, the same for the same seed; nothing silently dropped."""
    from metamodal.data import load_dataset
    from metamodal.extract.align_data import build_pairs

    ds = load_dataset(small_shop)
    tok = lambda texts: torch.zeros(len(texts), 4, dtype=torch.long)  # noqa: E731
    whole = build_pairs(ds, tmp_path / "all.npz", 16, tok)
    capped = build_pairs(ds, tmp_path / "cap.npz", 16, tok, max_pairs=50)
    build_pairs(ds, tmp_path / "again.npz", 16, tok, max_pairs=50)
    items = {n: np.load(tmp_path / f"{n}.npz")["items"] for n in ("all", "cap", "again")}
    assert capped.pairs == 50 and whole.pairs > 50
    assert set(items["cap"]) < set(items["all"]) and (np.diff(items["cap"]) > 0).all()
    np.testing.assert_array_equal(items["cap"], items["again"])
    assert capped.pairs + sum(capped.skipped.values()) == whole.pairs + sum(whole.skipped.values())
    assert capped.skipped["beyond_max_pairs"] > 0 and "beyond_max_pairs" not in whole.skipped


ALIGN = dict(epochs=2, batch_size=32, co_weight=0.5, seed=1, fail_at_epoch=1)


@pytest.fixture(scope="module")
def aligned(ray_session, small_shop: Path, tmp_path_factory: pytest.TempPathFactory):
    """One short alignment whose worker dies once, at epoch 1 (the runs are what costs)."""
    from metamodal.extract.align import AlignConfig, run_align

    out = tmp_path_factory.mktemp("align") / "a"
    return run_align(small_shop, out, AlignConfig(**ALIGN)), out


def test_align_then_extract_with_the_aligned_checkpoint(aligned, small_shop: Path, tmp_path: Path) -> None:
    from metamodal.data import load_dataset
    from metamodal.data.loaders.embeddings import load_embeddings
    from metamodal.extract.align import build_clip
    from metamodal.extract.encoders import Encoder, EncoderSpec
    from metamodal.extract.pipeline import ExtractOptions, build_config, run_extraction

    rep, align_dir = aligned
    assert rep.pairs["pairs"] == rep.pairs["train"] + rep.pairs["valid"] + rep.pairs["test"]
    assert sum(rep.pairs["skipped"].values()) > 0  # the shop has missing and corrupt inputs
    assert len(rep.epochs) == 2 and rep.random_init is True
    assert all(np.isfinite(e["loss"]) for e in rep.epochs)  # every epoch had full batches
    for part in (rep.test_before, rep.test_after):
        assert 0.0 <= part["i2t_recall@10"] <= 1.0
    ckpt = align_dir / "aligned.pt"
    assert json.loads((align_dir / "aligned.json").read_text())["arch"] == "mm-tiny-clip"
    init, trained = build_clip("mm-tiny-clip", None, 1), torch.load(ckpt, weights_only=True)
    assert any(not torch.equal(v, trained[k]) for k, v in init.state_dict().items())  # it trained
    heads = torch.load(align_dir / "aligned_heads.pt", weights_only=True)
    assert {"head_image.weight", "head_text.weight"} <= set(heads)

    ext = build_config(ExtractOptions(text=False, image_weights=str(ckpt), shard_size=64, actors=1))
    assert ext.encoders[0].arch == "mm-tiny-clip"  # taken from the sidecar
    m = run_extraction(small_shop, tmp_path / "emb", ext)
    assert m.modalities["image_clip"].random_init is False
    ds = load_dataset(small_shop)
    feats = load_embeddings(tmp_path / "emb", ds)["image_clip"]
    assert feats.dim == 128
    i = int(np.flatnonzero(feats.present)[0])
    from metamodal.extract.decode import load_image

    px, _ = load_image(ds.modalities["image"].paths[i], 64)
    direct = Encoder(ext.encoders[0]).encode_images(px[None])[0]
    assert np.allclose(feats.features[i], direct, atol=1e-5)
    with pytest.raises(ValueError, match="pass --arch mm-tiny-clip"):
        Encoder(EncoderSpec("open_clip_image", "x", arch="ViT-S-32", pretrained=str(ckpt)))


def test_alignment_resumes_after_a_worker_dies_and_the_same_command_keeps_it(aligned, small_shop: Path) -> None:
    from metamodal.config import ConfigError
    from metamodal.extract.align import AlignConfig, run_align

    rep, out = aligned
    assert (out / ".failed_once").exists()  # a worker really died at epoch 1
    assert [r["epoch"] for r in rep.epochs] == [1, 2]  # one row per epoch after the resume
    first = torch.load(out / "aligned.pt", weights_only=True)
    again = run_align(small_shop, out, AlignConfig(**ALIGN))  # finished: kept, not trained again
    assert again.epochs == rep.epochs  # the same rows, timings included: nothing retrained
    assert again.best_epoch == rep.best_epoch and again.test_after == rep.test_after
    second = torch.load(out / "aligned.pt", weights_only=True)
    assert all(torch.equal(v, second[k]) for k, v in first.items())
    with pytest.raises(ConfigError, match="another configuration"):
        run_align(small_shop, out, AlignConfig(**{**ALIGN, "epochs": 3}))


def feature_shop(small_shop: Path, out: Path) -> Path:
    """The shop with its own text and image feature matrices: each a different noisy linear
    image of the item's category (so a learnt map between them exists), absent where the raw
    modality is."""
    import shutil

    from metamodal.data import load_dataset

    shutil.copytree(small_shop, out)
    ds = load_dataset(out)
    rng = np.random.default_rng(0)
    cats = ds.item_meta["category"].astype("category").cat.codes.to_numpy()
    onehot = np.eye(cats.max() + 1)[cats]
    for name, src, dim in (("text_vec", "text", 12), ("image_vec", "image", 20)):
        x = onehot @ rng.normal(size=(onehot.shape[1], dim)) + 0.2 * rng.normal(size=(ds.n_items, dim))
        x[~ds.modalities[src].present] = 0.0  # an all-zero row is an absent feature
        np.save(out / f"{name}.npy", x.astype(np.float32))
    schema = json.loads((out / "catalog.json").read_text())
    schema["features"] = {"text_vec": {"path": "text_vec.npy", "kind": "text"},
                          "image_vec": {"path": "image_vec.npy", "kind": "image"}}  # fmt: skip
    (out / "catalog.json").write_text(json.dumps(schema))
    return out


def test_heads_align_frozen_features_into_one_space_and_a_rerun_keeps_them(ray_session, small_shop: Path,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    """Separate encoders + alignment: the features stay as they are, two heads learn the map
    (image→text Recall@10 on held-out pairs rises well above the random heads'), on two Ray
    Train workers with the co-interaction term; the saved heads reproduce the report."""
    from metamodal.config import ConfigError
    from metamodal.extract.align import AlignConfig
    from metamodal.extract.align_heads import heads_recall, load_heads, run_align_heads

    shop = feature_shop(small_shop, tmp_path / "shop")
    cfg = AlignConfig(mode="heads", epochs=6, batch_size=32, co_weight=0.5, dim=16, hidden=32, lr=3e-3, test_frac=0.2)
    rep = run_align_heads(shop, None, tmp_path / "h", cfg)
    assert rep.pairs["pairs"] == rep.pairs["train"] + rep.pairs["valid"] + rep.pairs["test"]
    assert rep.pairs["skipped"]["no_text"] + rep.pairs["skipped"].get("no_image", 0) > 0  # the shop's gaps
    assert rep.arch == "heads:text_vec+image_vec->16" and len(rep.epochs) == 6
    assert rep.test_after["i2t_recall@10"] > rep.test_before["i2t_recall@10"] + 0.2
    heads, names = load_heads(tmp_path / "h" / "heads.pt")
    assert names == {"text": "text_vec", "image": "image_vec"}
    data = np.load(tmp_path / "h" / "heads_pairs.npz")
    test = data["split"] == 2
    assert heads_recall(heads, data["text"][test], data["image"][test]) == rep.test_after
    again = run_align_heads(shop, None, tmp_path / "h", cfg)  # finished: kept, not retrained
    assert again.epochs == rep.epochs
    with pytest.raises(ConfigError, match="another configuration"):
        run_align_heads(shop, None, tmp_path / "h", cfg.model_copy(update={"epochs": 7}))
    with pytest.raises(ValueError, match="exactly one text feature modality"):
        run_align_heads(small_shop, None, tmp_path / "none", cfg)  # raw text and images only
