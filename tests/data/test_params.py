from dataclasses import dataclass, field
from typing import Literal

import pytest

from aed.params import ParamsError, bounded, from_dict, load_section
from aed.patching import PatchParams
from aed.validation.validate import ValidateParams


@dataclass
class Inner:
    rate: float = bounded(0.5, 0.0, 1.0)


@dataclass
class Example:
    epochs: int = bounded(10, 1)
    mode: Literal["a", "b"] = "a"
    names: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    path: str | None = None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"epochs": "ten"}, r"train\.epochs: expected an integer, got 'ten'"),
        ({"epochs": 0}, r"train\.epochs: 0 is out of range \[1, inf\]"),
        ({"epochs": True}, r"train\.epochs: expected an integer"),
        ({"mode": "c"}, r"train\.mode: expected one of \['a', 'b'\], got 'c'"),
        ({"names": "x"}, r"train\.names: expected a list"),
        ({"names": ["x", 3]}, r"train\.names\[1\]: expected a string"),
        ({"inner": {"rate": 2}}, r"train\.inner\.rate: 2\.0 is out of range \[0\.0, 1\.0\]"),
        ({"epoch": 3}, r"train: unknown key\(s\) \['epoch'\]"),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ParamsError, match=message):
        from_dict(Example, data, "train")


def test_good_values_are_coerced():
    params = from_dict(Example, {"epochs": 3, "inner": {"rate": 1}, "path": None}, "train")
    assert params.epochs == 3 and params.inner.rate == 1.0 and isinstance(params.inner.rate, float)


def test_repository_params_yaml_sections_load(repo_dir):
    patch = load_section(repo_dir / "params.yaml", "patch", PatchParams)
    assert (patch.patch_frames, patch.patch_step) == (96, 72)
    assert len(load_section(repo_dir / "params.yaml", "validate", ValidateParams).classes) == 10
