"""Pipeline steps. Each `components/<step>/` package exposes:

- `run(...)`: the single entry point (typed paths and a params dataclass in, files and a metrics dict out),
  called by the CLI, by `dvc.yaml` (through the CLI) and by the KFP task;
- `register(subparsers)`: adds its `aed <step>` subcommand, which reads params.yaml and calls `run`.
"""
