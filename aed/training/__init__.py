"""Transfer learning for the YAMNet models: splits, cached features, head training and fine-tuning."""

from aed.training.params import TrainParams
from aed.training.trainer import ModelSource, SplitResult, train_split

__all__ = ["ModelSource", "SplitResult", "TrainParams", "train_split"]
