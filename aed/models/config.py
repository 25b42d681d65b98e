"""params.yaml section `models`: which models the pipeline trains and where YAMNet-1024's float weights are."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aed.model_specs import check_model_name
from aed.params import ParamsError


@dataclass(frozen=True)
class ModelsParams:
    names: list[str] = field(default_factory=lambda: ["yamnet_256", "yamnet_1024"])
    # Google's float yamnet.h5 for YAMNet-1024 (optional): a local path or an http(s) URL, downloaded once into
    # weights_cache_dir. Its sha256 must then be pinned. Unset: the backbone is imported from the TFLite YAMNet
    # in AED_MODELS_MIRROR.
    yamnet_1024_h5: str | None = None
    yamnet_1024_h5_sha256: str | None = None
    weights_cache_dir: str = ".cache/aed/weights"

    def validate(self) -> None:
        if not isinstance(self.names, list):
            raise ParamsError(f"models.names: expected a list of model names, got {self.names!r}")
        for name in self.names:
            check_model_name(name, "models.names")
        if self.yamnet_1024_h5 and not self.yamnet_1024_h5_sha256:
            raise ParamsError("models.yamnet_1024_h5_sha256: required when models.yamnet_1024_h5 is set")

    def h5_for(self, model_name: str) -> tuple[Path | None, str | None]:
        """The local yamnet.h5 for model_name (downloaded first when given as a URL), and its pinned sha256."""
        if model_name != "yamnet_1024" or not self.yamnet_1024_h5:
            return None, None
        if self.yamnet_1024_h5.startswith(("http://", "https://")):
            from aed.datasets.fetch import download

            # Named by its hash: a re-pinned file never reuses a stale download.
            target = Path(self.weights_cache_dir) / f"yamnet-{self.yamnet_1024_h5_sha256}.h5"
            local = download(self.yamnet_1024_h5, target, self.yamnet_1024_h5_sha256)
        else:
            local = Path(self.yamnet_1024_h5)
        return local, self.yamnet_1024_h5_sha256
