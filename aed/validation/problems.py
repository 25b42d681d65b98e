"""Why a clip is quarantined: a short fixed kind (the console counts clips per kind) and the detail (file, figures)."""

from __future__ import annotations

from typing import NamedTuple


class Problem(NamedTuple):
    kind: str  # e.g. "silent", "file missing": few distinct values, so that a summary can count them
    detail: str  # names the file and the figures: what the report lists for the clip

    def __str__(self) -> str:
        return self.detail


def counts_by_kind(problems_per_clip: list[list[Problem]]) -> dict[str, int]:
    """Clips per kind (a clip with two problems of one kind counts once), most frequent first."""
    counts: dict[str, int] = {}
    for problems in problems_per_clip:
        for kind in dict.fromkeys(problem.kind for problem in problems):
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
