"""Config values from YAML files and ``key=value`` overrides, checked against a dataclass's annotations: types
(ints accepted for floats, "3e-5" read as a number), ``Literal`` choices, unknown keys with a close match.

Works on any nested dataclass; `seqtune.config` holds the schema itself.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from seqtune.errors import ConfigError, SeqtuneError


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return out


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _field_types(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _choices(annotation: Any) -> list[Any]:
    """The values a ``Literal[...]`` (or ``Literal[...] | None``) field allows; empty for other fields."""
    return [c for a in (annotation, *get_args(annotation)) if get_origin(a) is Literal for c in get_args(a)]


def choice_problems(obj: Any, prefix: str = "") -> list[str]:
    """Every ``Literal`` field of ``obj`` (and its nested groups) whose value is not one of its choices."""
    problems: list[str] = []
    for f, annotation in zip(dataclasses.fields(obj), _field_types(type(obj)).values(), strict=True):
        value, choices = getattr(obj, f.name), _choices(annotation)
        if dataclasses.is_dataclass(value):
            problems += choice_problems(value, f"{prefix}{f.name}.")
        elif choices and value is not None and value not in choices:
            problems.append(f"{prefix}{f.name}: expected one of {', '.join(map(str, choices))}, found {value!r}")
    return problems


def _coerce(value: Any, annotation: Any, key: str, problems: list[str]) -> Any:
    """Check a YAML/override value against a field's annotation; ints are accepted for floats."""
    text = str(annotation)
    if value is not None and _choices(annotation):
        return value  # `validate` checks it against the choices
    if value is None:
        if "None" in text:
            return None
        problems.append(f"{key}: expected a value, found null")
        return value
    if annotation is bool or text.startswith("bool"):
        if isinstance(value, bool):
            return value
    elif "float" in text:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads "3e-5" (no dot) as a string, in files and overrides alike; users mean a number.
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)
    elif "int" in text:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif "str" in text:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    else:  # pragma: no cover - every field has one of the types above
        return value
    expected = text.replace("<class '", "").replace("'>", "")
    problems.append(f"{key}: expected {expected}, found {value!r}")
    return value


def apply_values(obj: Any, values: dict[str, Any], prefix: str, problems: list[str]) -> None:
    hints = _field_types(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            problems.append(f"unknown key '{full}'{hint}")
            continue
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                problems.append(f"{full}: expected a mapping of settings, found {value!r}")
                continue
            apply_values(current, value, f"{full}.", problems)
        else:
            setattr(obj, key, _coerce(value, hints[key], full, problems))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=3e-5", "seed=1"]`` into a nested dict; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError([f"override '{item}': expected key=value, e.g. train.batch_size=32"])
        key, raw = item.split("=", 1)
        # Numbers like "3e-5" stay strings here and become floats in `_coerce`, so only float fields convert them
        # (--output 2024 or --text-column 1e5 stay the strings the user typed).
        nest(nested, key, yaml.safe_load(raw) if raw.strip() else None, f"override '{item}'")
    return nested


def nest(nested: dict[str, Any], key: str, value: Any, what: str) -> None:
    """Set dotted ``key`` (``train.lr``) in a nested dict."""
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(
                [f"{what}: '{part}' was already set to a single value; give either '{part}=...' or '{part}.<key>=...'"]
            )
    node[parts[-1]] = value


def read_yaml(path: Path, missing: str) -> Any:
    """Parse a YAML file; a missing file raises ``missing``, bad syntax a one-line error with the line number."""
    if not path.is_file():
        raise SeqtuneError(missing)
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise SeqtuneError(f"{path}{where}: not valid YAML; fix the syntax ({getattr(exc, 'problem', exc)})") from None


def attribute_docs(cls: type) -> dict[str, str]:
    """Each field's docstring: the string right after the field in the class body (whitespace collapsed)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr):
            if isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def first_sentence(doc: str) -> str:
    """A docstring's first sentence without reST markup, for a ``--help`` line.

    Example:
        >>> first_sentence("Peak learning rate of ``AdamW``. ``None`` (auto): 8e-5.")
        'Peak learning rate of AdamW'
    """
    text = doc.replace("``", "").replace("`", "")
    return re.split(r"\.(?:\s|$)", text, maxsplit=1)[0].strip()


def scalar_type(annotation: Any) -> type:
    """``int | None`` -> int, ``Literal["a", "b"]`` -> str, ``bool`` -> bool: the type a flag's value parses as."""
    text = str(annotation)
    if annotation is bool or text.startswith("bool"):
        return bool
    if _choices(annotation):
        return str
    for kind in (float, int, str):
        if kind.__name__ in text:
            return kind
    return str
