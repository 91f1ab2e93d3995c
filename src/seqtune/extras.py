"""Optional extras (serve, export, lora): imported only when used, with the exact install line when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from seqtune.errors import SeqtuneError

# extra -> the packages it installs (as in pyproject.toml's optional-dependencies)
EXTRAS = {"serve": "fastapi uvicorn", "export": "onnx onnxruntime onnxscript", "lora": "peft"}


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` from an optional extra, or fail with one line that says how to install it.

    Example:
        >>> ort = require("onnxruntime", "export")  # doctest: +SKIP
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SeqtuneError(
            f"seqtune {extra} needs the '{module}' package, which is not installed: "
            f"pip install 'seqtune[{extra}]' (or pip install {EXTRAS[extra]})"
        ) from None
