"""Container images the KFP tasks run in, named by a configurable registry and tag.

`docker/` builds them (see docs/pipeline.md, `make images`). params.yaml's `pipeline.image_registry` and
`pipeline.image_tag` (or `aed pipeline compile|submit --registry R --tag T`) choose them; an empty tag means the
project's version.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

DEFAULT_REGISTRY = "ghcr.io/aed-mlops"
KINDS = ("base", "train", "hil")


def _project_version() -> str:
    try:
        return metadata.version("aed-mlops")
    except metadata.PackageNotFoundError:
        return "latest"


@dataclass(frozen=True)
class Images:
    registry: str = DEFAULT_REGISTRY
    tag: str = ""

    def __post_init__(self) -> None:
        if not self.tag:
            object.__setattr__(self, "tag", _project_version())
        if not self.registry or self.registry.endswith("/") or " " in self.registry:
            raise ValueError(f"image registry {self.registry!r}: expected e.g. ghcr.io/org (no trailing '/')")
        if not self.tag or ":" in self.tag or "/" in self.tag:
            raise ValueError(f"image tag {self.tag!r}: expected e.g. 0.1.0")

    def name(self, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown image kind {kind!r}; known: {list(KINDS)}")
        return f"{self.registry}/aed-{kind}:{self.tag}"
