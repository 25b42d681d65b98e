"""What a background class changes in false alarms per hour (issue 18, point 6), measured on ESC-10.

Two YAMNet-256 models for the baby monitor of the issue (crying_baby, dog, rooster), trained by the pipeline's own
steps (`aed ingest / validate / patch / train / quantize`) with the same folds and seed:

- without: the three classes only (the manifest cut to their clips);
- with: the three classes plus `background`, drawn from rain and clock_tick (`validate.background`).

Both are then scored on the same seeded soundscapes, built as `aed evaluate --streaming` builds them from the
"with" model's splits: target events from each split's held-out fold, rain and clock_tick clips of that fold as
background sound at `streaming.background_snr_db_*` (so neither model ever trained on a clip it hears). Each
model's operating point is chosen by `aed calibrate`'s rule on soundscapes of its split's training folds, then both
are evaluated held out: false alarms per hour, miss rate, event F1 and PSDS, per fold and mean, and also at the
default detect point. Every figure comes from host int8 models (not a board).

    AED_DATA_MIRROR=../shared/data/esc10 .venv/bin/python experiments/background_class.py --json out.json

About 4 minutes per fold on 2 cores (two trainings of one split each); `--folds 1` for a quick look.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = ["crying_baby", "dog", "rooster"]
BACKGROUND_SOURCES = ["rain", "clock_tick"]
MODEL = "yamnet_256"


def variant_params(base: dict, name: str, folds: list[int]) -> dict:
    params = copy.deepcopy(base)
    with_background = name == "with"
    params["validate"].update(
        classes=sorted([*TARGETS, "background"]) if with_background else list(TARGETS),
        background=list(BACKGROUND_SOURCES) if with_background else [],
        min_share=None, max_share=None,
    )  # fmt: skip
    params["models"]["names"] = [MODEL]
    params["train"].update(folds=folds, final_model=False)
    params["train"]["overrides"][MODEL]["teacher"] = (
        None  # no YAMNet-1024 teacher: the two differ only in data
    )
    return params


def aed(*args: str | Path, log: Path) -> None:
    """One pipeline step through its CLI, as a user runs it; its output goes to `log`."""
    command = [str(ROOT / ".venv" / "bin" / "aed"), *map(str, args)]
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[1:3])} failed (exit {done.returncode}); its output: {log}")


def train_variant(work: Path, name: str, params: dict, manifest: Path, raw: Path) -> Path:
    """The variant's int8 split models, trained by the pipeline's steps; returns its folder."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    params_file = folder / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    log = folder / "steps.log"
    if name == "without":
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        manifest = folder / "manifest.csv"
        table[table["label"].isin(TARGETS)].to_csv(manifest, index=False)
    models = folder / "models" / MODEL
    if not (models / "int8").is_dir():
        common = ["--params", params_file]
        aed("validate", *common, "--manifest", manifest, "--raw-dir", raw, "--validated", folder / "validated.csv",
            "--report", folder / "validation.json", "--data-docs", folder / "data_docs", log=log)  # fmt: skip
        aed("patch", *common, "--manifest", folder / "validated.csv", "--raw-dir", raw, "--out", folder / "patches",
            "--metrics", folder / "patch.json", log=log)  # fmt: skip
        aed("train", *common, "--model-name", MODEL, "--patches", folder / "patches", "--out", models / "float",
            "--reports", folder / "reports", log=log)  # fmt: skip
        aed("quantize", *common, "--model-name", MODEL, "--patches", folder / "patches", "--model-dir",
            models / "float", "--out", models / "int8", log=log)  # fmt: skip
    return folder


def measure(work: Path, raw: Path, base: dict, args: argparse.Namespace) -> dict:
    from aed.artifacts import SPLITS_FILE
    from aed.detection import calibrate
    from aed.detection.detect import DetectParams, load_scorer
    from aed.detection.postprocess import PostProcessParams
    from aed.detection.soundscapes import build_split_set, read_splits, read_validated
    from aed.detection.streaming_eval import (
        StreamingParams,
        evaluate_scored,
        mean_figures,
        pooled,
        score_set,
        soundscape_classes,
        split_model,
    )  # fmt: skip
    from aed.labels import background_classes
    from aed.patching import PatchParams

    streaming = StreamingParams(**{**base["streaming"], "eval_per_split": args.per_split,
                                   "calibration_per_split": args.per_split})  # fmt: skip
    detect = DetectParams(**base["detect"])
    config = PatchParams(**base["patch"]).feature_config()
    default_point = PostProcessParams(
        **{k: base["detect"][k] for k in PostProcessParams.__dataclass_fields__}
    )
    # The sets: the "with" model's splits (its held-out fold holds the targets and the background clips).
    with_dir = work / "with"
    names_with, splits = read_splits(with_dir / "models" / MODEL / "float" / SPLITS_FILE)
    targets, background = soundscape_classes(names_with, streaming)
    table = read_validated(with_dir / "validated.csv")
    sets = {part: {split.name: build_split_set(table, raw, work / "soundscapes", split, part, args.per_split,
                                               streaming.soundscape_params(), targets, background,
                                               config.sample_rate)
                   for split in splits}
            for part in ("train", "test")}  # fmt: skip
    result: dict = {}
    for name in ("without", "with"):
        int8_dir = work / name / "models" / MODEL / "int8"
        class_names, _ = read_splits(work / name / "models" / MODEL / "float" / SPLITS_FILE)
        no_event = background_classes(class_names)
        scored = {part: {split: score_set(folder, load_scorer(split_model(int8_dir, split), False, detect.threads),
                                          detect, config, class_names)
                         for split, folder in folders.items()}
                  for part, folders in sets.items()}  # fmt: skip
        choice = calibrate.choose(pooled(scored["train"]), calibrate.CalibrateParams(**base["calibrate"]),
                                  streaming.collar_s, no_event)  # fmt: skip
        at = {}
        for label, point in (("calibrated", choice.point), ("default", default_point)):
            evaluated = {
                split: evaluate_scored(s, point, streaming, no_event) for split, s in scored["test"].items()
            }
            per_split = {split: e["figures"] for split, e in evaluated.items()}
            at[label] = {"per_split": per_split, "mean": mean_figures(per_split),
                         "false_alarms_by_class": _false_alarms_by_class(evaluated),
                         "false_alarms_during": _false_alarms_during(evaluated, scored["test"], sets["test"],
                                                                     streaming.collar_s)}  # fmt: skip
        result[name] = {
            "classes": class_names,
            "operating_point": calibrate.operating_point_dict(choice.point),
            "calibration": {"false_alarms_per_hour": choice.false_alarms_per_hour, "miss_rate": choice.miss_rate,
                            "meets_target": choice.meets_target},
            **at,
        }  # fmt: skip
    result["held_out_hours"] = pooled(scored["test"]).hours  # the same sets for both models
    return {"source": "host int8 models (aed detect's front end), not a board",
            "folds": [split.name for split in splits], "soundscapes_per_split": args.per_split, **result}  # fmt: skip


def _false_alarms_by_class(evaluated: dict[str, dict]) -> dict[str, int]:
    """False alarms of each class, summed over the splits."""
    total: dict[str, int] = {}
    for entry in evaluated.values():
        for label, row in entry["per_class"].items():
            total[label] = total.get(label, 0) + int(row.get("false_alarms", 0))
    return total


def _false_alarms_during(
    evaluated: dict[str, dict], scored: dict, folders: dict[str, Path], collar_s: float
) -> dict[str, int]:
    """False alarms (as aed.detection.streaming_eval.counts calls them) split by what played: a background clip
    they overlap, or the noise bed alone (from the placements each set's soundscapes.json records)."""
    from aed.detection.soundscapes import SOUNDSCAPES_RECORD
    from aed.detection.streaming_eval import false_alarms

    during = {"background sound": 0, "noise bed only": 0}
    for split, entry in evaluated.items():
        placed = json.loads((folders[split] / SOUNDSCAPES_RECORD).read_text())["background"]
        for row in false_alarms(scored[split].truth, entry["events"], collar_s).itertuples():
            heard = any(
                min(b["offset"], row.offset) > max(b["onset"], row.onset) for b in placed[row.filename]
            )
            during["background sound" if heard else "noise bed only"] += 1
    return during


def table(result: dict) -> str:
    rows = [
        "| | operating point | false alarms / hour | by class | during | miss rate | event F1 | PSDS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("without", "with"):
        entry = result[name]
        for label in ("calibrated", "default"):
            mean = entry[label]["mean"]
            point = entry["operating_point"] if label == "calibrated" else "detect defaults"
            rows.append(f"| {name} background | {label}: {point} | {mean['false_alarms_per_hour']:.1f} | "
                        f"{entry[label]['false_alarms_by_class']} | {entry[label]['false_alarms_during']} | "
                        f"{mean['miss_rate']:.2f} | {mean['event_f1']:.2f} | {mean['psds']:.2f} |")  # fmt: skip
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "background_class")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--per-split", type=int, default=5, help="soundscapes per split and part (60 s each)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if not os.environ.get("AED_DATA_MIRROR"):
        parser.error("set AED_DATA_MIRROR to the ESC-10 mirror (e.g. ../shared/data/esc10)")
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    raw, manifest = work / "raw", work / "manifest.csv"
    if not manifest.is_file():
        aed("ingest", "--raw-dir", raw, "--manifest", manifest, "--metrics", work / "ingest.json",
            log=work / "ingest.log")  # fmt: skip
    for name in ("without", "with"):
        train_variant(work, name, variant_params(base, name, args.folds), manifest, raw)
    result = measure(work, raw, base, args)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
