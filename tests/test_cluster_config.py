"""cluster.yaml against Ray's own cluster-config schema (the launcher's first check in `ray up`),
plus the facts the README's cluster section relies on."""

from __future__ import annotations

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
