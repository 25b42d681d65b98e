"""The known models by name, without Keras: what a command line or a params file may name, checked in the first
second of a step. It sits outside the aed.models package on purpose: importing anything there runs its
__init__, which offers the Keras builders, and every step's CLI checks names through components.common."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from aed.params import ParamsError

Flavour = Literal["bn", "bias"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    n_blocks: int
    embedding_size: int
    flavour: Flavour


MODEL_SPECS: dict[str, ModelSpec] = {
    "yamnet_256": ModelSpec("yamnet_256", 6, 256, "bn"),
    # The float yamnet.h5 is optional; the default 1024 weights come from the TFLite model (ReLU6, folded BN).
    "yamnet_1024": ModelSpec("yamnet_1024", 14, 1024, "bias"),
}


class UnknownModelError(ParamsError):
    """A model name that is not in MODEL_SPECS (a ValueError: the CLI prints it as one line, exit 2)."""


def unknown_model_message(name: object) -> str:
    """`unknown model 'yamnet256' (did you mean yamnet_256?); valid: yamnet_1024, yamnet_256`."""
    valid = sorted(MODEL_SPECS)
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown model {name!r}{hint}; valid: {', '.join(valid)}"


def check_model_name(name: object, where: str = "model") -> str:
    """`name` when it is a known model; else UnknownModelError naming `where` (the argument or params key) and
    the valid names."""
    if not isinstance(name, str) or name not in MODEL_SPECS:
        raise UnknownModelError(f"{where}: {unknown_model_message(name)}")
    return name
