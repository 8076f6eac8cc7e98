"""A 2-node Ray cluster on this machine with storage on a local S3 server
(``two_node_scenario.py``, in its own process): training survives losing a node, Serve survives
losing a replica."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# A hang, not a slow machine, is what the cap guards against: on a CI host whose two cores are
# shared the scenario runs several times slower than alone.
SCENARIO_CAP_S = 600


def test_two_nodes_lose_a_training_node_and_a_serve_replica(tmp_path: Path) -> None:
    report = tmp_path / "timeline.json"
    script = Path(__file__).with_name("two_node_scenario.py")
    try:
        done = subprocess.run([sys.executable, str(script), str(report)], capture_output=True,
                              text=True, timeout=SCENARIO_CAP_S)  # fmt: skip
    except subprocess.TimeoutExpired as err:  # say where it hung, not only that it did
        out, errs = ((b or b"").decode(errors="replace") for b in (err.stdout, err.stderr))
        pytest.fail(f"the two-node scenario ran past {SCENARIO_CAP_S} s:\n{out[-3000:]}\n{errs[-5000:]}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    got = json.loads(report.read_text())
    print(json.dumps(got, indent=2))  # the timeline, for the log
    train, serve = got["train"], got["serve"]
    assert train["nodes_at_start"] == 2
    assert train["epochs_logged"] == list(range(1, 7))  # one row per epoch across the loss
    assert train["resumed_from"] and train["resumed_from"][0] >= 1  # from a bucket checkpoint
    assert train["removed_after_epoch"] < 6  # the node went mid-run, not after it
    assert serve["run_pulled_from_bucket"]
    assert serve["ingress_nodes"] == 2 and serve["answers_before"] == [200] * 5
    assert serve["first_answer_after_kill_s"] is not None and serve["first_answer_after_kill_s"] < 10
    assert not any(c.startswith("5") and c != "503" for c in serve["after_kill"])  # shed, not broken
