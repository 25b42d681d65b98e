"""Transfer learning for the YAMNet models: splits, cached features, head training and fine-tuning.

TrainParams is light; the trainer imports TensorFlow (seconds), so its names load on first use (PEP 562) and
`aed --help` or a params check never pays for them."""

from typing import Any

from aed.training.params import TrainParams

__all__ = ["ModelSource", "SplitResult", "TrainParams", "train_split"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'aed.training' has no attribute {name!r}")
    from aed.training import trainer

    return getattr(trainer, name)
