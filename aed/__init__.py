"""Domain library for tiny audio event detection models: data, features, models, footprint, evaluation."""

__version__ = "0.1.0"
