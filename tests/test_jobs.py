"""`ray job submit` against a head node this test starts (`ray start --head --block` in its own
temp dir and ports — the agent's default port may be held by another Ray on the machine;
terminating that process stops exactly that node, never the test's Ray)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.test_serve import free_port

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def wait_for(url: str, seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {seconds:.0f} s")


@pytest.fixture
def head_node(tmp_path: Path):
    temp = tempfile.mkdtemp(prefix="/tmp/rj")  # Ray's socket paths must stay short
    dash = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    log = (tmp_path / "head.log").open("w")
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={free_port()}", "--num-cpus=2",
         f"--temp-dir={temp}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={free_port()}",
         f"--ray-client-server-port={free_port()}", f"--metrics-export-port={free_port()}",
         "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{dash}/api/version", 120)
        yield f"http://127.0.0.1:{dash}", env
    finally:
        tree = psutil.Process(head.pid).children(recursive=True)  # before any is orphaned
        head.terminate()  # a graceful stop waits ~30 s on Serve's replicas: give it 5, then kill
        try:
            head.wait(5)
        except subprocess.TimeoutExpired:
            head.kill()
        for p in tree:  # raylet, GCS, agents, replicas (renamed `ray::...`): nothing of another Ray
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        head.wait(30)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_job_submit_then_serve_deploy_on_a_started_head(
    head_node, small_shop: Path, tmp_path: Path
) -> None:
    """A training stage as a Ray job, then `serve deploy` of the recommender app over its
    checkpoint (the installed `serve_apps` import path, as `serve_apps/config.yaml` uses)."""
    address, env = head_node
    out = tmp_path / "bpr"
    cmd = [RAY, "job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
           sys.executable, "jobs/train.py", "--model", "bpr", "--dataset", str(small_shop),
           "--out", str(out), "--set", "train.epochs=2", "--set", "train.retrieval_check=false"]  # fmt: skip
    for _ in range(20):  # the dashboard answers before its job agent has registered
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        if "No available agent" not in r.stderr + r.stdout:
            break
        time.sleep(3)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "succeeded" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["model"] == "bpr" and res["epochs"] == 2 and 0 <= res["test"]["recall@20"] <= 1

    port = free_port()
    cfg = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [{
            "name": "recommender", "route_prefix": "/",
            "import_path": "serve_apps.recommender:app_builder",
            "args": {"retriever_run": str(out), "reranker": "model", "model_run": str(out),
                     "pool_size": 20},
        }],
    }  # fmt: skip
    (tmp_path / "serve.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    d = subprocess.run([str(Path(sys.executable).parent / "serve"), "deploy", str(tmp_path / "serve.yaml"),
                        "--address", address], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert d.returncode == 0, (d.stdout + d.stderr)[-3000:]
    wait_for(f"http://127.0.0.1:{port}/healthz", 180)
    user = (small_shop / "interactions.csv").read_text().splitlines()[1]
    body = json.dumps({"user_id": user.split(",")[0], "k": 5}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/recommend", data=body,
                                 headers={"content-type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as r:
        got = json.loads(r.read())
    assert len(got["items"]) == 5 and got["reranker"] == "model:bpr"
