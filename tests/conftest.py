"""Shared fixtures. Tests generate their own data: nothing here needs ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")  # else ~1.7 s per report

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic shop in the generic format (300 items, 240 users)."""
    from metamodal.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("shop")
    return generate(
        out, SynthConfig(n_items=300, n_users=240, seed=3, image_size=32), progress=False
    )


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole run (start + stop cost 3-5 s). Four logical CPUs on a
    2-core host so Ray Data's read tasks and actors never starve each other."""
    import ray

    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=512 * 2**20,
        configure_logging=False,
    )
    yield
    ray.shutdown()
