"""What every layer's configuration shares: ``key.path=value`` overrides, merging layers, and the
one error a bad layer raises. Below every other module, so each stage's typed config (zoo runs,
extraction, the MMA run, Serve) reads overrides the same way without importing another stage."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Flag:
    """The command-line option a pydantic field becomes (the CLI's and the jobs' alike)."""

    name: str
    kind: type
    choices: list | None
    repeat: bool  # given once per value: a list, or a dict as KEY=VALUE items
    required: bool
    default: Any
    help: str | None
    positional: bool = False  # a command's subject (a catalogue path), not a --flag


def model_flags(model: Any) -> list[Flag]:
    """One ``Flag`` per field of the pydantic ``model``: an option is declared once, there."""
    out = []
    for name, f in model.model_fields.items():
        kind, choices, repeat = flag_type(f.annotation)
        default = None if f.is_required() or repeat else f.default
        positional = bool((f.json_schema_extra or {}).get("positional"))
        out.append(Flag(name, kind, choices, repeat, f.is_required(), default, f.description,
                        positional))  # fmt: skip
    return out


def add_model_flags(parser: Any, model: Any) -> None:
    """One ``--flag`` per field of ``model`` on an argparse ``parser`` (the ``jobs/``
    entrypoints); ``flags_to_model`` reads them back."""
    import argparse

    for f in model_flags(model):
        flag = "--" + f.name.replace("_", "-")
        if f.positional:
            parser.add_argument(f.name, type=f.kind, help=f.help)
        elif f.kind is bool and not f.repeat:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                required=f.required, help=f.help)  # fmt: skip
        else:
            parser.add_argument(flag, type=f.kind, default=f.default, choices=f.choices,
                                required=f.required, help=f.help,
                                action="append" if f.repeat else "store")  # fmt: skip


def flags_to_model(model: Any, values: dict, parser: Any = None) -> Any:
    """The ``model`` the parsed flags describe (a flag not given keeps the field's default). A
    bad value exits through ``parser.error`` naming the field, or raises ``ConfigError``."""
    from pydantic import ValidationError

    given = {k: v for k, v in values.items() if k in model.model_fields and v is not None}
    try:
        return model(**given)
    except ValidationError as e:
        msg = "; ".join(_flag_error(x) for x in e.errors())
        if parser is None:
            raise ConfigError(msg) from None
        parser.error(msg)


def _flag_error(err: dict) -> str:
    """A pydantic error as the flag that caused it (a whole-model check names none)."""
    loc = ".".join(map(str, err["loc"][:1])).replace("_", "-")
    return f"--{loc}: {err['msg']}" if loc else err["msg"]


def parse_flags(models: Any, description: str | None, argv: list[str] | None = None) -> Any:
    """A ``jobs/`` entrypoint's whole command line, parsed into its options ``models`` (one
    model, or a list of them sharing the command line: then a list back)."""
    import argparse

    many = isinstance(models, list | tuple)
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    for m in models if many else [models]:
        add_model_flags(p, m)
    values = vars(p.parse_args(argv))
    out = [flags_to_model(m, values, p) for m in (models if many else [models])]
    return out if many else out[0]


def flag_type(annotation: Any) -> tuple[type, list | None, bool]:
    """(the scalar type a flag parses to, its choices, repeated) of a field's annotation:
    ``X | None`` parses as X; a ``Literal`` gives choices; ``list[X]`` and ``dict[str, X]``
    (``KEY=VALUE`` items the model parses) are given once per value."""
    import types
    import typing
    from pathlib import Path

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return flag_type(args[0])
    if origin is typing.Literal:
        return type(args[0]), list(args), False
    if origin is list and len(args) == 1:
        kind, choices, _ = flag_type(args[0])
        return kind, choices, True
    if origin is dict:
        return str, None, True
    if annotation in (bool, int, float, str, Path):
        return annotation, None, False
    raise TypeError(f"no flag for a field of type {annotation!r}; give it a --set override instead")


def load_layered(model: Any, overrides: list[str] | None, preset: Any = None, seeds: int | None = None) -> Any:
    """A run's configuration: ``model``'s defaults ← a preset (``--quick``) ← ``key.path=value``
    overrides (validated: unknown keys fail naming them) ← ``--seeds``. What a user sets
    explicitly wins over the preset: ``--quick --set test_episodes=200`` reads 200."""
    raw: dict = {}
    for o in overrides or []:
        raw = merge_layers(raw, parse_override(o))
    base = {} if preset is None else preset(model()).model_dump()
    cfg = model(**merge_layers(base, raw))
    if seeds is not None:
        cfg = cfg.model_copy(update={"seeds": seeds})
    return cfg
