"""Datasets: fetching sources (http zip, local directory, S3), dataset layouts (ESC-50/ESC-10, FSD50K,
custom CSV) and the manifest of the raw audio."""
