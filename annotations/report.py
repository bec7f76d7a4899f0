"""Problems found while converting, and the end-of-run summary."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prodet.annotations.atomic import atomic_write_bytes

# Problem kinds. "error" kinds make a ``--on-error fail`` run fail; the others (warnings:
# size_mismatch, clipped_box, degenerate_box, unknown_split_id) are fixed the same way in
# every mode and only reported.
ERROR_KINDS = frozenset(
    {
        "unreadable_xml",  # malformed XML, or not VOC at all
        "bad_object",  # an <object> without a usable name or bndbox
        "missing_image",  # no image for the annotation
        "unreadable_image",  # the image file exists but is not a readable image
        "inverted_box",  # xmin > xmax or ymin > ymax
        "unknown_class",  # name not in --classes
        "duplicate_id",  # two annotation files with the same stem
    }
)


@dataclass(frozen=True)
class Problem:
    """One thing that was wrong in the input and what was done about it.

    ``object_index`` is the 0-based position of the ``<object>`` in its file, or None
    when the problem concerns the whole file.
    """

    kind: str
    file: str
    message: str
    action: str
    object_index: int | None = None

    @property
    def is_error(self) -> bool:
        return self.kind in ERROR_KINDS

    def line(self) -> str:
        where = (
            self.file if self.object_index is None else f"{self.file} object {self.object_index}"
        )
        return f"{where}: {self.message} [{self.kind}; {self.action}]"


@dataclass
class ConversionSummary:
    """Counts shown at the end of ``prodet convert`` and stored in the report."""

    annotation_files: int = 0
    images: int = 0
    objects_per_class: dict[str, int] = field(default_factory=dict)
    difficult: int = 0
    negatives: int = 0
    problems_by_kind: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    reused: bool = False

    @property
    def objects(self) -> int:
        return sum(self.objects_per_class.values())

    def format(self) -> str:
        """A short human-readable table."""
        lines = [
            f"annotation files: {self.annotation_files}",
            f"images:           {self.images} ({self.negatives} without objects)",
            f"objects:          {self.objects} ({self.difficult} difficult)",
        ]
        if self.splits:
            lines.append(
                "splits:           " + ", ".join(f"{k}={v}" for k, v in sorted(self.splits.items()))
            )
        if self.objects_per_class:
            width = max(len(c) for c in self.objects_per_class)
            lines.append("objects per class:")
            lines += [f"  {c:<{width}}  {n}" for c, n in self.objects_per_class.items()]
        if self.problems_by_kind:
            lines.append("problems:")
            lines += [f"  {k}: {n}" for k, n in sorted(self.problems_by_kind.items())]
        else:
            lines.append("problems:         none")
        return "\n".join(lines)


def count_problems(problems: list[Problem]) -> dict[str, int]:
    return dict(Counter(p.kind for p in problems))


def write_report(path: Path, summary: ConversionSummary, problems: list[Problem]) -> None:
    """Write the summary and every problem as JSON (atomically)."""
    payload = {
        "summary": {**asdict(summary), "objects": summary.objects},
        "problems": [
            {**asdict(p), "severity": "error" if p.is_error else "warning"} for p in problems
        ],
    }
    atomic_write_bytes(path, json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8"))
