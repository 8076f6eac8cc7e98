"""Shared fixtures. Tests generate their own data: nothing here needs ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic shop in the generic format (300 items, 240 users)."""
    from metamodal.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("shop")
    return generate(
        out, SynthConfig(n_items=300, n_users=240, seed=3, image_size=32), progress=False
    )
