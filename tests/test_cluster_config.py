"""cluster.yaml against Ray's own cluster-config schema (the launcher's first check in `ray up`),
plus the facts the README's cluster section relies on."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


def test_cluster_yaml_is_valid_for_the_ray_launcher() -> None:
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(cfg))  # what `ray up` does first; names a bad field
    workers = {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}
    assert workers and all(
        v["max_workers"] >= 1 and v["min_workers"] == 0 for v in workers.values()
    )
    assert any(v["node_config"]["InstanceType"].startswith(("g", "p")) for v in workers.values())
    assert any("pip install" in c and "-e" in c for c in cfg["setup_commands"])
    assert "~/metamodal" in cfg["file_mounts"] and cfg["docker"]["image"].startswith(
        "rayproject/ray:"
    )


def _start_commands(cfg: dict) -> list[str]:
    return [c for k in ("head_start_ray_commands", "worker_start_ray_commands") for c in cfg[k]
            if "ray start" in c]  # fmt: skip


def insecure(cfg: dict) -> list[str]:
    """What in a cluster config lets anyone who reaches the head run code there."""
    found = []
    for c in _start_commands(cfg):
        if "RAY_AUTH_MODE=token" not in c or "RAY_AUTH_MODE=disabled" in c:
            found.append(f"token auth not on: {c}")
        host = re.search(r"--dashboard-host[= ](\S+)", c)
        if host and host.group(1) not in ("127.0.0.1", "localhost"):
            found.append(f"dashboard on {host.group(1)}: {c}")
    if "~/.ray/auth_token" not in cfg["file_mounts"]:
        found.append("no token file mounted on the nodes")
    return found


def test_cluster_yaml_is_secured_and_its_checker_catches_each_hole() -> None:
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert insecure(cfg) == []
    assert len(_start_commands(cfg)) == 2
    for hole in ("RAY_AUTH_MODE=disabled ", "--dashboard-host=0.0.0.0"):
        bad = copy.deepcopy(cfg)
        c = bad["head_start_ray_commands"][-1]
        bad["head_start_ray_commands"][-1] = (c.replace("RAY_AUTH_MODE=token ", hole)
                                              if hole.startswith("RAY") else f"{c} {hole}")  # fmt: skip
        assert insecure(bad), hole
    bad = copy.deepcopy(cfg)
    del bad["file_mounts"]["~/.ray/auth_token"]
    assert insecure(bad)


def test_cluster_runs_drivers_on_the_head_keeps_runs_in_s3_and_installs_what_ci_does() -> None:
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert head["resources"].get("CPU", 1) >= 1  # drivers, Tune and the Serve controller ask for CPU
    env = cfg["file_mounts"]["~/metamodal.env"]
    example = (ROOT / (Path(env).name + ".example")).read_text()
    assert re.search(r"^METAMODAL_STORAGE=s3://", example, re.M)
    assert all(". ~/metamodal.env" in c for c in _start_commands(cfg))
    # the Makefile's venv recipe, pip line for pip line (the cluster uses the image's python)
    make = (ROOT / "Makefile").read_text()
    ci = [re.sub(r"^\$\(PY\) -m ", "", ln.strip()) for ln in make.splitlines()
          if ln.strip().startswith("$(PY) -m pip install") and "--upgrade pip" not in ln]  # fmt: skip
    cluster = [re.sub(r"^(cd ~/metamodal && )?python3 -m ", "", c) for c in cfg["setup_commands"]
               if "pip install" in c and "--upgrade pip" not in c]  # fmt: skip
    assert cluster == ci, (cluster, ci)


def test_the_schema_check_catches_a_broken_config() -> None:
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    cfg["available_node_types"]["head"]["bogus_field"] = 1
    with pytest.raises(jsonschema.ValidationError, match="bogus_field"):
        validate_config(prepare_config(cfg))


def test_serve_config_names_importable_deployments() -> None:
    from metamodal.serving import deployments

    cfg = yaml.safe_load((ROOT / "serve_apps" / "config.yaml").read_text())
    assert cfg["http_options"]["host"] == "127.0.0.1"
    (app,) = cfg["applications"]
    assert app["import_path"] == "serve_apps.recommender:app_builder"
    for d in app["deployments"]:
        assert hasattr(deployments, d["name"]), d["name"]
