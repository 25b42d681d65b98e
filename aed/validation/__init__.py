"""Dataset validation: a great-expectations suite over the manifest, per-file audio checks, quarantine."""
