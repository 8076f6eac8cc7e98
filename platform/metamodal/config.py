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


def add_model_flags(parser: Any, model: Any) -> None:
    """One ``--flag`` per field of the pydantic ``model`` on an argparse ``parser`` (the
    ``jobs/`` entrypoints): its type, default, choices and help come from the field, so an
    option is declared once, in the model."""
    import argparse

    for name, f in model.model_fields.items():
        kind, choices = flag_type(f.annotation)
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.description)
        else:
            parser.add_argument(flag, type=kind, default=f.default, choices=choices, help=f.description)


def flag_type(annotation: Any) -> tuple[type, list | None]:
    """(the scalar type a flag parses to, its choices) of a field's annotation: ``X | None``
    parses as X; a ``Literal`` gives choices."""
    import types
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return flag_type(args[0])
    if typing.get_origin(annotation) is typing.Literal:
        return type(args[0]), list(args)
    if annotation in (bool, int, float, str):
        return annotation, None
    raise TypeError(f"no flag for a field of type {annotation!r}; give it a --set override instead")
