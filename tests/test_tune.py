"""Ray Tune + ASHA over a tiny space: the trial table, the best configuration as an override file
the training job loads, TensorBoard logs, and validation-only selection (test never read)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from metamodal.tuning import load_spec, nested

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_spaces_parse(tmp_path: Path) -> None:
    from metamodal.models import ZOO

    spaces = sorted((ROOT / "tune_spaces").glob("*.yaml"))
    assert {load_spec(f).model for f in spaces} == set(ZOO)  # every zoo model can be tuned
    for f in spaces:
        spec = load_spec(f)
        params = ZOO[spec.model].Params.model_fields
        for key in spec.space:
            section, name = key.split(".", 1)
            assert section in ("train", "params") and (section == "train" or name in params), key
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: bpr\nspace:\n  train.lr: {normal: [0, 1]}\n")
    with pytest.raises(ValueError, match="train.lr"):
        load_spec(bad)


def test_tune_run_on_a_tiny_space(small_shop: Path, ray_session, tmp_path: Path) -> None:
    from metamodal.train.config import load_config
    from metamodal.tuning import run_tune

    space = tmp_path / "space.yaml"
    space.write_text(
        "model: bpr\nnum_samples: 2\nmax_epochs: 3\ngrace_period: 1\nreduction_factor: 2\n"
        "space:\n  train.lr: {choice: [0.001, 0.01, 0.05]}\n"
        "  params.embedding_dim: {choice: [16, 32]}\n"
    )
    from ray.util.placement_group import placement_group_table

    def reserved() -> set[str]:
        return {k for k, v in placement_group_table().items() if v["state"] != "REMOVED"}

    before = reserved()
    out = tmp_path / "tune"
    summary = run_tune(space, small_shop, out, ["train.batch_size=512"], wandb=False)
    assert summary["trials"] == 2 and summary["failed"] == 0
    # ASHA-stopped trials' Train placement groups are released (else the next sweep hangs)
    assert reserved() <= before
    rows = (out / "trials.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and "valid_recall@20" in rows[0]
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["train"]["lr"] in (0.001, 0.01, 0.05) and best["params"]["embedding_dim"] in (
        16,
        32,
    )
    cfg, params = load_config("bpr", small_shop, override_file=out / "best.yaml")
    assert (
        cfg.train.lr == best["train"]["lr"]
        and params.embedding_dim == best["params"]["embedding_dim"]
    )
    # each trial is a zoo run; ASHA (or max_t) ends it before its final evaluation, and a run
    # that does finish never reads test
    runs = list(out.glob("trials/*/metrics.jsonl"))
    assert len(runs) == 2
    for f in out.glob("trials/*/results.json"):
        assert json.loads(f.read_text())["test"] is None
    # a trial's training rotates checkpoints outside what Tune copies to its storage
    assert not list(out.glob("ray_results/**/checkpoint_*"))
    assert list(out.glob("ray_results/**/events.out.tfevents*"))  # TensorBoard
    assert (out / "curves.png").stat().st_size > 0


def test_nested_override() -> None:
    assert nested({"params.alpha": 0.1, "train.lr": 1e-3}) == {
        "params": {"alpha": 0.1},
        "train": {"lr": 1e-3},
    }


def test_a_datasets_tuned_block_is_regenerated_whole_and_read_as_its_layer(
    tmp_path: Path, monkeypatch
) -> None:
    """The shared settings above the block survive; the same sweeps give the same bytes; the
    training config reads each model's chosen values from it."""
    from metamodal.train import config as config_mod
    from metamodal.train.config import load_config
    from metamodal.tuning.dataset_layer import write_dataset_layer

    layer = tmp_path / "shopx.yaml"
    layer.write_text("# the shop\ntrain:\n  lr: 0.002\n")
    sweep = {"metric": "valid_recall@20", "trials": 4, "failed": 1, "max_epochs": 30,
             "searched": ["params.alpha", "train.lr"],
             "best": {"params.alpha": 0.05, "train.lr": 0.004, "valid_recall@20": 0.31}}  # fmt: skip
    write_dataset_layer(layer, {"margo": sweep})
    first = layer.read_text()
    write_dataset_layer(layer, {"margo": sweep, "bpr": {**sweep, "searched": ["train.lr"]}})
    write_dataset_layer(layer, {"margo": sweep})
    assert layer.read_text() == first and first.startswith("# the shop\ntrain:\n  lr: 0.002\n")
    assert "4 trials (1 failed), at most 30 epochs; best valid_recall@20 0.3100" in first
    got = yaml.safe_load(first)
    assert got["models"] == {"margo": {"params": {"alpha": 0.05}, "train": {"lr": 0.004}}}
    monkeypatch.setattr(
        config_mod, "_package_yaml", lambda rel: got if rel == "datasets/shopx.yaml" else {}
    )
    cfg, params = load_config("margo", "/data/shopx")
    assert (params.alpha, cfg.train.lr) == (0.05, 0.004)
    assert (
        load_config("bpr", "/data/shopx")[0].train.lr == 0.002
    )  # an untuned model: the shared value


def test_a_catalogues_tuned_layer_is_keyed_on_its_declared_name(tmp_path, monkeypatch) -> None:
    """A catalogue's layer follows the name in its ``catalog.json``, not the folder it sits in:
    the generated shop's tuned values must not reach a user's catalogue in a folder of that name."""
    from metamodal.data import DataError
    from metamodal.train import config as config_mod
    from metamodal.train.config import load_config

    asked: list[str] = []
    monkeypatch.setattr(config_mod, "_package_yaml", lambda rel: asked.append(rel) or {})
    shop = tmp_path / "lfm2k"
    shop.mkdir()
    (shop / "items.jsonl").write_text('{"id": "a", "text": "a red shoe"}\n')
    (shop / "interactions.csv").write_text("user_id,item_id\nu,a\n")
    load_config("bpr", shop)
    assert asked[0] == "datasets/lfm2k.yaml"  # no declared name: the folder's
    (shop / "catalog.json").write_text(json.dumps({"name": "my-shop"}))
    asked.clear()
    load_config("bpr", shop)
    assert asked[0] == "datasets/my-shop.yaml"
    (shop / "catalog.json").write_text('{"name": ')
    with pytest.raises(DataError, match="catalog.json.*invalid JSON"):
        load_config("bpr", shop)
