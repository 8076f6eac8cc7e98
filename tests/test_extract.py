"""Extraction through Ray Data: bad inputs become reasons, every item appears once per
modality, interrupted runs resume to the same embeddings, ids stay aligned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metamodal.extract.encoders import Encoder, EncoderSpec, WeightsUnavailable
from metamodal.rundir import SCHEMA_VERSION, LayoutError

IMAGE = EncoderSpec(
    "open_clip_image", "image_clip", arch="ViT-S-32", random_init=True, image_size=32, seed=1
)
TEXT = EncoderSpec("minilm", "text_minilm")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 items: ok images, a truncated JPEG, a text file named .jpg, a missing file, none;
    real text, whitespace, none."""
    from PIL import Image

    d = tmp_path_factory.mktemp("cat")
    (d / "img").mkdir()
    rows = []
    for i in range(40):
        rec = {"id": f"it{i:02d}", "text": f"a {['red', 'blue', 'green'][i % 3]} lamp number {i}"}
        path = d / "img" / f"{i}.jpg"
        Image.new("RGB", (40, 40), (i * 6, 255 - i * 6, 100)).save(path)
        rec["image"] = f"img/{i}.jpg"
        rows.append(rec)
    rows[3]["image"] = None
    rows[4]["text"] = "   "
    rows[5].pop("text")
    data = (d / "img" / "6.jpg").read_bytes()
    (d / "img" / "6.jpg").write_bytes(data[: len(data) // 3])  # truncated
    (d / "img" / "7.jpg").write_text("not an image")
    (d / "img" / "8.jpg").unlink()
    (d / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (d / "interactions.csv").write_text(
        "user_id,item_id\n" + "".join(f"u{i % 7},it{i:02d}\n" for i in range(40))
    )
    return d


def cfg(**kw):
    from metamodal.extract.pipeline import ExtractConfig

    return ExtractConfig(
        **{"encoders": [IMAGE], "shard_size": 16, "batch_size": 8, "actors": 2, **kw}
    )


def test_bad_inputs_counted_once_per_item_and_aligned(
    ray_session, catalog: Path, tmp_path: Path
) -> None:
    import torch

    from metamodal.data import load_dataset
    from metamodal.data.loaders.embeddings import load_embeddings, read_modality
    from metamodal.extract.pipeline import run_extraction

    threads = torch.get_num_threads()
    m = run_extraction(catalog, tmp_path, cfg(encoders=[TEXT, IMAGE]))
    # the driver idles on one thread while actors encode, then gives the cores back (a
    # pipeline's MMA stage once ran its LLM single-threaded after extraction)
    assert torch.get_num_threads() == threads
    img, txt = m.modalities["image_clip"], m.modalities["text_minilm"]
    assert m.items == 40 and img.rows == txt.rows == 40
    assert img.reasons == {
        "image_absent": 2,
        "image_corrupt": 1,
        "image_unreadable": 1,
    }  # 3 and 8 absent
    assert (
        img.present == 36
        and img.random_init is True
        and m.random_init["image_clip"] is True
    )
    assert txt.reasons == {"text_absent": 2} and txt.present == 38
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["modalities"]["image_clip"]["missing"] == 4
    for name in ("image_clip", "text_minilm"):
        t = read_modality(tmp_path, name)
        assert sorted(t.column("item_id").to_pylist()) == [
            f"it{i:02d}" for i in range(40)
        ]  # exactly once
    ds = load_dataset(catalog)
    feats = load_embeddings(tmp_path, ds)
    f = feats["text_minilm"]
    assert f.dim == 384 and not f.present[4] and not f.present[5] and f.present[9]
    norms = np.linalg.norm(f.features[f.present], axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)
    direct = Encoder(TEXT).encode_texts([ds.modalities["text"].texts[9]])[0]  # id alignment
    assert np.allclose(f.features[9], direct, atol=1e-5)
    assert (
        not feats["image_clip"].present[[3, 6, 7, 8]].any()
        and feats["image_clip"].present[[0, 9]].all()
    )
    assert feats["image_clip"].kind == "image" and f.kind == "text"
    # a manifest that does not say which raw modality an encoder read is refused, naming it
    del saved["modalities"]["image_clip"]["source"]
    (tmp_path / "manifest.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"modalities\.image_clip\.source"):
        load_embeddings(tmp_path, ds)
    # a directory of the layout before run directories were versioned names the version expected
    (tmp_path / "run.json").unlink()
    with pytest.raises(LayoutError, match=f"kind 'extract', schema {SCHEMA_VERSION}; it has no run.json"):
        load_embeddings(tmp_path, ds)
    with pytest.raises(LayoutError, match="no run.json"):
        run_extraction(catalog, tmp_path, cfg(encoders=[TEXT, IMAGE]))


def test_resume_matches_uninterrupted_and_rerun_skips(
    ray_session, catalog: Path, tmp_path: Path
) -> None:
    from metamodal.data.loaders.embeddings import read_modality
    from metamodal.extract.pipeline import run_extraction

    part = run_extraction(catalog, tmp_path / "a", cfg(max_new_shards=1))
    assert part.modalities["image_clip"].complete is False
    assert len(list((tmp_path / "a" / "image_clip").glob("shard-*.parquet"))) == 1
    resumed = run_extraction(catalog, tmp_path / "a", cfg())
    assert (
        resumed.modalities["image_clip"].encoded_now < 40 - 16 + 1
    )  # the first shard was skipped
    run_extraction(catalog, tmp_path / "b", cfg(actors=1))
    a, b = read_modality(tmp_path / "a", "image_clip"), read_modality(tmp_path / "b", "image_clip")
    assert a.column("item_id").to_pylist() == b.column("item_id").to_pylist()
    ea = np.asarray(a.column("embedding").combine_chunks().flatten()).reshape(40, -1)
    eb = np.asarray(b.column("embedding").combine_chunks().flatten()).reshape(40, -1)
    assert (
        np.allclose(ea, eb, atol=1e-5)
        and a.column("present").to_pylist() == b.column("present").to_pylist()
    )
    again = run_extraction(catalog, tmp_path / "a", cfg())
    assert again.modalities["image_clip"].encoded_now == 0
    other = EncoderSpec(
        "open_clip_image", "image_clip", arch="ViT-S-32", random_init=True, image_size=32, seed=2
    )
    with pytest.raises(ValueError, match="another configuration"):
        run_extraction(catalog, tmp_path / "a", cfg(encoders=[other]))


def test_readers_trust_only_the_shards_the_manifest_recorded(
    ray_session, catalog: Path, tmp_path: Path
) -> None:
    """Per-shard checksums: a changed, missing or extra shard, a manifest without checksums and
    an interrupted --overwrite are each an error naming what is wrong, never mixed features."""
    import shutil

    from metamodal.data import load_dataset
    from metamodal.data.loaders.embeddings import load_embeddings
    from metamodal.extract.pipeline import run_extraction

    ds = load_dataset(catalog)
    m = run_extraction(catalog, tmp_path, cfg(encoders=[IMAGE]))
    shards = sorted((tmp_path / "image_clip").glob("shard-*.parquet"))
    assert set(m.modalities["image_clip"].shard_sha256) == {p.name for p in shards} and len(shards) > 1
    assert load_embeddings(tmp_path, ds)["image_clip"].present.sum() == 36
    keep = shards[0].read_bytes()
    shards[0].write_bytes(keep[:-8] + bytes(8))  # torn or replaced in place
    with pytest.raises(ValueError, match=f"{shards[0].name}: checksum differs"):
        load_embeddings(tmp_path, ds)
    shards[0].unlink()
    with pytest.raises(ValueError, match=f"{shards[0].name}: missing"):
        load_embeddings(tmp_path, ds)
    shards[0].write_bytes(keep)
    shutil.copy(shards[1], tmp_path / "image_clip" / "shard-00099.parquet")
    with pytest.raises(ValueError, match="shard-00099.parquet: not in the manifest"):
        load_embeddings(tmp_path, ds)
    (tmp_path / "image_clip" / "shard-00099.parquet").unlink()
    assert load_embeddings(tmp_path, ds)["image_clip"].present.sum() == 36  # as recorded again
    _rewrite_recorded(tmp_path, shards[0], lambda e: np.where(np.arange(e.size) == 5, np.nan, e))
    with pytest.raises(ValueError, match="image_clip: non-finite embedding for item 'it00'"):
        load_embeddings(tmp_path, ds)  # recorded as it is, but no model may train on it
    shards[0].write_bytes(keep)
    _rewrite_recorded(tmp_path, shards[0], lambda e: e)
    saved = json.loads((tmp_path / "manifest.json").read_text())
    del saved["modalities"]["image_clip"]["shard_sha256"]
    (tmp_path / "manifest.json").write_text(json.dumps(saved))
    with pytest.raises(LayoutError, match="no shard checksums for 'image_clip'"):
        load_embeddings(tmp_path, ds)
    other = EncoderSpec("open_clip_image", "image_clip", arch="ViT-S-32", random_init=True,
                        image_size=32, seed=2)  # fmt: skip
    run_extraction(catalog, tmp_path, cfg(encoders=[other], overwrite=True, max_new_shards=1))
    with pytest.raises(ValueError, match="image_clip: extraction incomplete"):
        load_embeddings(tmp_path, ds)  # the interrupted --overwrite, not the old features


def _rewrite_recorded(out: Path, shard: Path, change) -> None:
    """Rewrite ``shard``'s embeddings through ``change`` and record its new checksum, as an
    extraction that produced those values would have."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from metamodal.rundir import file_sha256

    t = pq.read_table(shard)
    emb = np.asarray(t.column("embedding").combine_chunks().flatten())
    dim = t.schema.field("embedding").type.list_size
    col = pa.FixedSizeListArray.from_arrays(pa.array(change(emb), pa.float32()), dim)
    pq.write_table(t.set_column(t.schema.get_field_index("embedding"), "embedding", col), shard)
    m = json.loads((out / "manifest.json").read_text())
    m["modalities"]["image_clip"]["shard_sha256"][shard.name] = file_sha256(shard)
    (out / "manifest.json").write_text(json.dumps(m))


def test_a_node_without_the_catalogue_fails_instead_of_calling_every_image_missing(
    catalog: Path, tmp_path: Path
) -> None:
    from metamodal.extract.decode import CatalogueNotOnNode, decode_batch

    batch = {"idx": np.array([0]), "payload": np.array([str(catalog / "img" / "0.jpg")], dtype=object)}
    assert decode_batch(batch, 16, catalogue=str(catalog))["ok"].tolist() == [True]
    elsewhere = tmp_path / "not-synced-here"  # the driver's path, absent on this node
    with pytest.raises(CatalogueNotOnNode, match="not-synced-here: not on node"):
        decode_batch(batch, 16, catalogue=str(elsewhere))


def test_weights_never_downloaded() -> None:
    with pytest.raises(WeightsUnavailable, match="random_init=True explicitly"):
        Encoder(EncoderSpec("open_clip_image", "x", arch="ViT-S-32"))
    with pytest.raises(WeightsUnavailable, match="not in the local cache"):
        Encoder(EncoderSpec("open_clip_image", "x", arch="ViT-B-32", pretrained="openai"))
    with pytest.raises(WeightsUnavailable, match="neither a file nor a known"):
        Encoder(EncoderSpec("open_clip_image", "x", pretrained="no-such-tag"))


def test_keyword_answers_parse_into_short_distinct_keywords() -> None:
    from metamodal.extract.keywords import parse_keywords

    assert parse_keywords("Keywords: 1. Space Horror\n- alien creature, alien creature; a b c d e", 5) == [
        "space horror", "alien creature", "a b c"]  # fmt: skip
    assert parse_keywords("item: toy story (1995). animation, children", 2) == ["toy story (1995)", "animation"]


def test_summariser_reward_tuning_on_ray_train_writes_a_checkpoint_the_keyword_job_reads(
    ray_session, catalog: Path, tmp_path: Path, tiny_llm: Path
) -> None:
    """GRPO on Ray Train over a random-init tiny LLM (the machinery, not the words): the tuned
    summariser is a plain checkpoint the keyword encoder loads, and the report holds the three
    reward terms before and after on held-out items."""
    from metamodal.extract.keywords import KeywordWriter
    from metamodal.extract.options import SummariserConfig
    from metamodal.extract.summariser import tune_summariser

    cfg = SummariserConfig(model=str(tiny_llm), items=8, holdout=4, steps=2, prompts_per_step=2,
                           num_generations=2, max_new_tokens=6, workers=1)  # fmt: skip
    res = tune_summariser(str(catalog), tmp_path, cfg)
    for when in ("before", "after"):
        assert set(res[when]) == {"kept", "found", "length", "reward", "empty"}
        assert 0 < res[when]["found"] <= 1 and res[when]["length"] >= 0
    assert res["train_items"] == 8 and res["holdout_items"] == 4
    assert json.loads((tmp_path / "report.json").read_text()) == res
    assert "| found | " in (tmp_path / "report.md").read_text()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r["stage"] == "grpo_reward" for r in rows) and any(r["stage"] == "done" for r in rows)
    assert len(KeywordWriter(str(tmp_path / "summariser")).summarise(["a red lamp"])) == 1
