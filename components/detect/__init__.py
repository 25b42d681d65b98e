"""Step `detect`: a trained model + recordings of any length -> events over time (CSV and JSON in the DCASE
layout), a PNG of each class's score per recording, and a record.

Each recording is streamed through the reference front end (no silence removal, a window every `detect.hop_s`),
scored by the int8 (TFLite / ONNX QDQ) or float model, and post-processed (aed.detection.postprocess). A recording
that cannot be used is named on stderr and skipped: the others still run and are written, and the exit code is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from aed.detection.detect import DetectParams
from aed.params import load_section
from aed.patching import PatchParams
from components.common import add_params_option

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")  # what ingest reads (aed.datasets.layouts)
PROGRESS_FROM_S = 120.0  # a progress bar for recordings at least this long (on a terminal)


def run(
    params: DetectParams,
    model_path: Path,
    audio: Sequence[Path],
    out_dir: Path,
    record_path: Path | None,
    class_names: Sequence[str],
    patch: PatchParams | None = None,
    background: Sequence[str] = (),
    operating_point: Path | None = None,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Detect events in every recording of `audio` (files, or folders searched for audio files). Returns the
    figures; `failed` names each input that could not be used and why."""
    from aed.detection.detect import (
        DetectError,
        check_class_count,
        check_model_input,
        load_scorer,
        write_events_csv,
    )
    from aed.detection.stream import hop_frames
    from aed.outputs import OutputSpec, check_file_outputs, replacing
    from aed.patching import class_order
    from aed.records import write_record

    warn = warn or _stderr
    class_names = class_order((), class_names)  # the model's output order
    _check_background(background, class_names)
    if operating_point is not None:
        params = replace(params, **_operating_point(operating_point))
    sources = {"model": Path(model_path), **{f"audio input {a}": Path(a) for a in audio}}
    check_file_outputs({"--record": record_path}, {**sources, "output folder": out_dir})
    config = (patch or PatchParams()).feature_config()
    hop_frames(config, params.hop_s)  # a bad hop, model or class map fails once, before any recording
    scorer = load_scorer(model_path, params.reference_kernels, params.threads)
    check_class_count(scorer, class_names, "the class map (validate.classes or --classes)")
    check_model_input(scorer, config)
    recordings, failed = expand_inputs(audio)
    for error in failed.values():
        warn(f"aed detect: error: {error}")
    detections = []
    with replacing(out_dir, OutputSpec("detect"), sources, asdict(params)) as staging:
        for number, path in enumerate(recordings):
            try:
                detection = _detect_one(scorer, path, class_names, params, background, patch)
            except DetectError:
                raise  # the model's problem (e.g. logits, not probabilities): every recording would fail alike
            except (ValueError, OSError) as error:  # this recording's problem: named, the others still run
                message = " ".join(str(error).split())
                failed[str(path)] = message if str(path) in message else f"{path}: {message}"
                warn(f"aed detect: error: {failed[str(path)]}")
                continue
            detections.append(detection)
            _report(detection, say, warn)
            if params.plot:
                _plot(detection, class_names, params, background, staging, number)
        write_events_csv(detections, staging / "events.csv")
        settings = {**asdict(params), "background": list(background), "class_names": list(class_names)}
        _write_json(detections, failed, staging / "events.json", settings)
    figures = _figures(detections, failed, scorer.kind)
    if record_path is not None:
        write_record(record_path, "detect", figures, inputs={"model": Path(model_path)})
    return figures


def _detect_one(scorer, path: Path, class_names, params: DetectParams, background, patch: PatchParams | None):
    from aed.detection.detect import detect_file

    config = patch.feature_config() if patch is not None else None
    with _progress_bar(path) as progress:
        return detect_file(scorer, path, class_names, params, background, config, progress)


class _progress_bar:
    """A tqdm bar in seconds of audio for long recordings on a terminal; nothing otherwise."""

    def __init__(self, path: Path) -> None:
        self.path, self.bar = path, None

    def __enter__(self) -> Callable[[float], None]:
        from aed.audio import AudioError, probe

        try:
            seconds = probe(self.path).duration_s
        except AudioError:
            seconds = 0.0  # the stream reports the problem
        if seconds >= PROGRESS_FROM_S and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=round(seconds), unit="s", desc=self.path.name, leave=False, file=sys.stderr)
        return self.update

    def update(self, seconds: float) -> None:
        if self.bar is not None:
            self.bar.update(max(0, round(seconds) - self.bar.n))

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def expand_inputs(audio: Sequence[Path]) -> tuple[list[Path], dict[str, str]]:
    """Files as given, folders searched (recursively, sorted) for audio files; a missing input or an empty
    folder is a failure of that input, not of the others."""
    found: list[Path] = []
    failed: dict[str, str] = {}
    for entry in map(Path, audio):
        if entry.is_dir():
            files = sorted(
                p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not files:
                failed[str(entry)] = f"{entry}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder"
            found.extend(files)
        elif entry.is_file():
            found.append(entry)
        else:
            failed[str(entry)] = f"{entry}: no such file or folder"
    unique = list(dict.fromkeys(found))  # a file named twice (directly and in its folder) is read once
    return unique, failed


def _check_background(background: Sequence[str], class_names: Sequence[str]) -> None:
    unknown = sorted(set(background) - set(class_names))
    if unknown:
        raise ValueError(f"--background: {unknown} not among the model's classes {list(class_names)}")


def _operating_point(path: Path) -> dict:
    """The post-processing fields of a calibrated operating point (a JSON object of PostProcessParams fields)."""
    from aed.detection.postprocess import PostProcessParams
    from aed.params import ParamsError, from_dict

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ParamsError(f"{path}: cannot read the operating point ({error})") from None
    return from_dict(PostProcessParams, data, str(path)).postprocess_fields()


def _report(detection, say: Callable[[str], None], warn: Callable[[str], None]) -> None:
    for problem in detection.warnings:
        warn(f"aed detect: warning: {detection.filename}: {problem}")
    say(f"{detection.filename}: {detection.duration_s:.1f} s, {len(detection.events)} event(s)")
    for event in detection.events:
        say(f"  {event.onset:9.2f} {event.offset:9.2f}  {event.label:<16} peak {event.peak:.3f}")


def _plot(detection, class_names, params: DetectParams, background, folder: Path, number: int) -> None:
    from aed.detection.plot import save_scores_png

    # numbered: two recordings of one name (in different folders) must not overwrite each other's PNG
    name = f"{number + 1:04d}-{Path(detection.filename).stem}.png"
    save_scores_png(detection, class_names, params, folder / name, background)
    detection.png = name


def _write_json(detections, failed: dict[str, str], path: Path, settings: dict) -> None:
    from aed.detection.detect import write_events_json

    write_events_json(detections, failed, path, settings)


def _figures(detections, failed: dict[str, str], kind: str) -> dict:
    audio_s = sum(d.duration_s for d in detections)
    return {
        "model_format": kind,
        "recordings": len(detections),
        "failed": len(failed),
        "failed_inputs": sorted(failed),
        "events": sum(len(d.events) for d in detections),
        "audio_s": round(audio_s, 3),
        "events_per_class": _per_class(detections),
    }


def _per_class(detections) -> dict[str, int]:
    counts: dict[str, int] = {}
    for detection in detections:
        for event in detection.events:
            counts[event.label] = counts.get(event.label, 0) + 1
    return dict(sorted(counts.items()))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect", help="find events over time in recordings of any length with a trained model"
    )
    add_params_option(parser)
    parser.add_argument(
        "--model", type=Path, required=True, help="int8 .tflite, QDQ .onnx or float .keras model"
    )
    parser.add_argument("audio", type=Path, nargs="+", help="recordings or folders of recordings")
    parser.add_argument(
        "--out", type=Path, default=Path("detections"), help="output folder (default: detections)"
    )
    parser.add_argument("--classes", type=Path, default=None,
                        help="the model's class map: classes.json of its patch store (default: validate.classes)")  # fmt: skip
    parser.add_argument("--background", action="append", default=[], metavar="CLASS",
                        help="a class that never makes an event (repeatable)")  # fmt: skip
    parser.add_argument("--operating-point", type=Path, default=None,
                        help="calibrated post-processing (JSON of detect's smoothing / threshold fields)")  # fmt: skip
    parser.add_argument(
        "--hop-s", type=float, default=None, help="seconds between windows (default: detect.hop_s)"
    )
    parser.add_argument("--no-plot", action="store_true", help="no PNG per recording")
    parser.add_argument("--record", type=Path, default=None, help="JSON record of the run")
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "detect", DetectParams)
    if args.hop_s is not None:
        params = _with(params, hop_s=args.hop_s)
    if args.no_plot:
        params = replace(params, plot=False)
    patch = load_section(args.params, "patch", PatchParams)
    classes = _class_names(args)
    figures = run(params, args.model, args.audio, args.out, args.record, classes, patch, args.background,
                  args.operating_point)  # fmt: skip
    print(f"detect: {figures['events']} event(s) in {figures['recordings']} recording(s) "
          f"({figures['audio_s']:.1f} s of audio), written to {args.out}")  # fmt: skip
    if figures["failed"]:
        if figures["failed"] + figures["recordings"] > 1:  # one input: its own error line says it all
            print(f"aed detect: error: {figures['failed']} of {figures['failed'] + figures['recordings']} "
                  f"inputs could not be used: {', '.join(figures['failed_inputs'])}", file=sys.stderr)  # fmt: skip
        return 2
    return 0


def _with(params: DetectParams, **changes) -> DetectParams:
    from aed.params import ParamsError

    try:
        return replace(params, **changes)
    except ValueError as error:
        raise ParamsError(f"--{str(error).replace('_', '-', 1)}") from None


def _class_names(args: argparse.Namespace) -> list[str]:
    if args.classes is None:
        from aed.validation.validate import ValidateParams

        return load_section(args.params, "validate", ValidateParams).classes
    try:
        data = json.loads(Path(args.classes).read_text(encoding="utf-8"))
        names = data["class_names"] if isinstance(data, dict) else data
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f'{args.classes}: not a class map (classes.json: {{"class_names": [...]}}; {error})'
        ) from None
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ValueError(f"{args.classes}: class_names must be a non-empty list of names")
    return names
