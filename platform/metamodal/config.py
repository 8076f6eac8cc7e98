"""What every layer's configuration shares: ``key.path=value`` overrides, merging layers, and the
one error a bad layer raises. Below every other module, so each stage's typed config (zoo runs,
extraction, the MMA run, Serve) reads overrides the same way without importing another stage."""

from __future__ import annotations

from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration layer has an unknown key or a bad value."""


def merge_layers(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = (
            merge_layers(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def parse_override(text: str) -> dict:
    """``"train.lr=0.01"`` -> ``{"train": {"lr": 0.01}}`` (the value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    value: Any = yaml.safe_load(raw)
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value
