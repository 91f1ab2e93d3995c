"""The command-line flags of ``seqtune train`` / ``search``, generated from the config dataclasses' fields."""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass
from typing import Any, get_type_hints

from seqtune.config import RunConfig
from seqtune.config_values import attribute_docs, first_sentence, scalar_type


@dataclass(frozen=True)
class CliFlag:
    """A command-line flag of ``seqtune train`` / ``search``, generated from a config field."""

    flag: str
    key: str  # the dotted config key it sets
    type: type | None  # the value's type; None: a switch that sets ``value``
    help: str  # the first sentence of the field's docstring
    value: Any = None


def cli_flags() -> list[CliFlag]:
    """Every config field with a flag, in config order: its flag, switches and help from the field's docstring."""
    out: list[CliFlag] = []
    groups: list[tuple[str, type]] = [("", RunConfig)]
    groups += [
        (f"{f.name}.", f.default_factory) for f in dataclasses.fields(RunConfig) if f.default_factory is not MISSING
    ]  # type: ignore[misc]
    for prefix, cls in groups:
        docs, hints = attribute_docs(cls), get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if "flag" not in f.metadata:
                continue
            key, text = f"{prefix}{f.name}", first_sentence(docs.get(f.name, ""))
            kind = scalar_type(hints[f.name])
            if kind is bool:
                out.append(CliFlag(f.metadata["flag"], key, None, text, not f.default))
            else:
                out.append(CliFlag(f.metadata["flag"], key, kind, text))
            for switch, value in f.metadata["shortcuts"].items():
                out.append(CliFlag(switch, key, None, f"{key}={value}", value))
    return out
