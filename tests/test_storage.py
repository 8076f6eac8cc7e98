"""Storage every node reaches, against a real S3-compatible server (moto's, on 127.0.0.1):
run directories mirror to the bucket and back with checksums, a training run resumes from the
bucket after its node's disk is gone, and extraction resumes from shards in the bucket. (A
Serve app loading its run from the bucket: ``test_two_node.py``.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from metamodal.storage import ENV_ENDPOINT, ENV_URI, Storage, StorageError

BUCKET = "metamodal-test"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on a free loopback port, with one bucket; the process's credentials
    point at it for the module."""
    import logging
    import os

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1")
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield Storage(uri=f"s3://{BUCKET}/runs", endpoint=endpoint)
    server.stop()
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture
def use_storage(s3: Storage, monkeypatch: pytest.MonkeyPatch) -> Storage:
    monkeypatch.setenv(ENV_URI, s3.uri)
    monkeypatch.setenv(ENV_ENDPOINT, s3.endpoint)
    return s3


def _objects(storage: Storage, local: Path) -> set[str]:
    import pyarrow.fs as pafs

    fs, remote = storage.filesystem()[0], storage.remote(local)
    infos = fs.get_file_info(pafs.FileSelector(remote, recursive=True, allow_not_found=True))
    return {i.path.removeprefix(remote + "/") for i in infos if i.type == pafs.FileType.File}


def test_push_mirrors_a_run_directory_and_pull_verifies_it(s3: Storage, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "split").mkdir(parents=True)
    (run / "config.json").write_text('{"a": 1}')
    (run / "split" / "split.npz").write_bytes(b"x" * 1000)
    (run / "ray_results").mkdir()
    (run / "ray_results" / "ckpt").write_text("Ray Train writes these itself")
    (run / "zoo" / "bpr").mkdir(parents=True)
    (run / "zoo" / "bpr" / "run.json").write_text("{}")  # a nested run syncs on its own
    assert s3.push(run) == 2
    assert _objects(s3, run) == {"config.json", "split/split.npz", ".storage_index.json"}
    assert s3.push(run) == 0  # nothing changed, nothing uploaded
    (run / "config.json").write_text('{"a": 2}')
    (run / "split" / "split.npz").unlink()
    assert s3.push(run) == 1
    assert _objects(s3, run) == {"config.json", ".storage_index.json"}  # the removed file went

    shutil.rmtree(run)  # the node's disk is gone: another node pulls the run
    assert s3.pull(run) == 1 and json.loads((run / "config.json").read_text()) == {"a": 2}
    assert s3.pull(run) == 0  # already whole

    fs, remote = s3.filesystem()[0], s3.remote(run)
    with fs.open_output_stream(f"{remote}/config.json") as f:
        f.write(b'{"a": 3}')  # an object that is not what the index says
    shutil.rmtree(run)
    with pytest.raises(StorageError, match="config.json does not match its index"):
        s3.pull(run)
    assert not (run / "config.json").exists()  # nothing half-trusted was written


def test_storage_setting_is_checked_and_keys_follow_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metamodal.config import ConfigError
    from metamodal.raylogs import storage_env

    monkeypatch.chdir(tmp_path)
    shared = Storage(uri=str(tmp_path / "mnt"))  # a shared mount
    assert shared.remote("runs/bpr") == f"{tmp_path / 'mnt'}/runs/bpr"
    assert shared.remote("/elsewhere/x").endswith("/mnt/elsewhere/x")
    # a Ray process started elsewhere (a Tune trial, a Train controller) keys a run directory
    # the same way: the workspace travels with the object and in the environment it hands on
    (tmp_path / "trial").mkdir()
    monkeypatch.chdir(tmp_path / "trial")
    assert shared.remote(tmp_path / "runs" / "bpr") == f"{tmp_path / 'mnt'}/runs/bpr"
    monkeypatch.setenv(ENV_URI, shared.uri)
    monkeypatch.setenv("METAMODAL_WORKSPACE", str(tmp_path))
    assert storage_env()["METAMODAL_WORKSPACE"] == str(tmp_path)
    assert Storage.from_env().remote(tmp_path / "runs" / "bpr") == shared.remote("../runs/bpr")
    with pytest.raises(ConfigError, match="storage 'nope://x'"):
        Storage(uri="nope://x").filesystem()
    monkeypatch.setenv(ENV_URI, "")
    assert Storage.from_env() is None


def test_cli_pushes_and_pulls_a_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from metamodal.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_URI, "")  # restored after: the --storage option sets it
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "results.json").write_text("{}")
    cli = CliRunner()
    assert "no storage set" in cli.invoke(app, ["storage", "push", "runs/x"]).output
    shared = ["--storage", str(tmp_path / "mnt")]
    assert "1 file(s) pushed" in cli.invoke(app, [*shared, "storage", "push", "runs/x"]).output
    assert (tmp_path / "mnt" / "runs" / "x" / "results.json").is_file()
    shutil.rmtree(tmp_path / "runs")
    assert "1 file(s) pulled" in cli.invoke(app, [*shared, "storage", "pull", "runs/x"]).output
    assert (tmp_path / "runs" / "x" / "results.json").read_text() == "{}"


def test_training_resumes_from_the_bucket_after_its_disk_is_gone(
    ray_session, use_storage: Storage, small_shop: Path, tmp_path: Path
) -> None:
    from metamodal.train.runner import run_training

    out = tmp_path / "bpr"
    args = ["train.epochs=4", "train.fail_at_epoch=2", "train.max_failures=0", "train.batch_size=512"]
    with pytest.raises(Exception):  # noqa: B017 - the injected worker death ends this attempt
        run_training("bpr", small_shop, out, args)
    remote = _objects(use_storage, out)
    assert {"config.json", "split/split.npz", "metrics.jsonl"} <= remote
    assert any(p.startswith("ray_results/") and p.endswith("best.pt") for p in remote)
    shutil.rmtree(out)  # the node is gone; only the fault injector's mark is put back
    out.mkdir()
    (out / ".failed_once").touch()
    res = run_training("bpr", small_shop, out, args)
    assert res.resumed_from in ([1], [2])  # from the bucket's last registered checkpoint
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert {"results.json", "model.pt", "curves.png"} <= _objects(use_storage, out)


def test_extraction_resumes_from_shards_in_the_bucket(
    ray_session, use_storage: Storage, small_shop: Path, tmp_path: Path
) -> None:
    from metamodal.data.loaders.embeddings import read_modality
    from metamodal.extract.encoders import EncoderSpec
    from metamodal.extract.pipeline import ExtractConfig, run_extraction

    def cfg(**kw) -> ExtractConfig:
        spec = EncoderSpec("open_clip_image", "image_clip", arch="ViT-S-32", random_init=True,
                           image_size=32, seed=1)  # fmt: skip
        return ExtractConfig(encoders=[spec], shard_size=100, batch_size=32, actors=1, **kw)

    out = tmp_path / "emb"
    part = run_extraction(small_shop, out, cfg(max_new_shards=1))
    assert part.modalities["image_clip"].complete is False
    assert "image_clip/shard-00000.parquet" in _objects(use_storage, out)  # pushed as written
    shutil.rmtree(out)
    done = run_extraction(small_shop, out, cfg())
    assert done.modalities["image_clip"].encoded_now <= 300 - 100  # the bucket's shard was kept
    assert len(read_modality(out, "image_clip")) == 300
    shutil.rmtree(out)
    use_storage.pull(out)  # what another node reads: verified against the manifest's checksums
    assert len(read_modality(out, "image_clip")) == 300
