"""Moment-DETR JSONL annotations: one query per line with ``qid, query, vid, duration, relevant_windows``.

Windows are in seconds and follow the one rule the pipeline also applies (:mod:`shine.windows`). Public
Charades-CG train windows sometimes end up to 1.5 s after the video's duration; those ends are clipped to the
duration and counted (``AnnotationSet.clipped_windows``), as the data contract says. A window that is not two
numbers, is negative, zero-length or inverted, or starts at or after the duration is a
:class:`~trainer.errors.DataError` naming the file, line and qid; with ``strict=True`` any window past the
duration is one too. An empty query is always an error: no text feature can ground it.

>>> import json, tempfile
>>> p = tempfile.mktemp(suffix=".jsonl")
>>> _ = open(p, "w").write(json.dumps({"qid": "a_0", "query": "person opens the door.", "vid": "a",
...                                    "duration": 10.0, "relevant_windows": [[2.0, 10.5]]}) + "\\n")
>>> anns = load_annotations(p)
>>> anns[0].windows, anns.clipped_windows
(((2.0, 10.0),), 1)
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shine.windows import WindowFormatError, WindowRuleError, check_duration, check_window
from trainer.errors import DataError

__all__ = ["Annotation", "AnnotationSet", "load_annotations", "split_by_video", "write_annotations"]

_REQUIRED = ("qid", "query", "vid", "duration")


@dataclass(frozen=True)
class Annotation:
    """One query. ``windows`` are (start, end) seconds, already clipped to ``duration``; empty for test-only files."""

    qid: str
    query: str
    vid: str
    duration: float
    windows: tuple[tuple[float, float], ...]

    def to_json(self) -> dict:
        """The Moment-DETR JSONL row."""
        return {
            "qid": self.qid,
            "query": self.query,
            "duration": self.duration,
            "vid": self.vid,
            "relevant_windows": [list(w) for w in self.windows],
        }


@dataclass
class AnnotationSet(Sequence[Annotation]):
    """The annotations of one file, in file order, plus what loading had to fix."""

    items: list[Annotation]
    source: str = ""
    clipped_windows: int = 0
    extra: dict = field(default_factory=dict)

    def __getitem__(self, i):  # type: ignore[override]
        return self.items[i]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Annotation]:
        return iter(self.items)


def _parse_line(row: object, where: str, strict: bool) -> tuple[Annotation, int]:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in _REQUIRED if k not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}; a Moment-DETR row has {list(_REQUIRED)} + relevant_windows")
    qid, vid = str(row["qid"]), str(row["vid"])
    query = row["query"]
    if not isinstance(query, str) or not query.strip():
        raise DataError(f"{where}: empty query for qid {qid!r}; drop the row or fill in the sentence")
    try:
        duration = check_duration(row["duration"])
    except WindowFormatError as exc:
        raise DataError(f"{where} (qid {qid!r}): {exc}") from None
    raw_windows = row.get("relevant_windows") or []
    if not isinstance(raw_windows, list):
        raise DataError(f"{where}: relevant_windows must be a list of [start, end] seconds, got {raw_windows!r:.80} "
                        f"(qid {qid!r})")
    windows: list[tuple[float, float]] = []
    clipped = 0
    for w in raw_windows:
        try:
            st, ed, was_clipped = check_window(w, duration, strict=strict)
        except (WindowFormatError, WindowRuleError) as exc:
            hint = "; set data.strict_windows=false to clip it" if strict and "strict mode" in str(exc) else ""
            raise DataError(f"{where} (qid {qid!r}): {exc}{hint}") from None
        clipped += was_clipped
        windows.append((st, ed))
    return Annotation(qid=qid, query=query.strip(), vid=vid, duration=duration, windows=tuple(windows)), clipped


def load_annotations(path: str | Path, *, strict: bool = False, require_windows: bool = True) -> AnnotationSet:
    """Read a Moment-DETR JSONL file; errors name the file and 1-based line."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"annotation file {path} is a directory; pass the .jsonl file inside it")
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist")
    items: list[Annotation] = []
    seen: set[str] = set()
    clipped = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not UTF-8 text (byte 0x{raw[exc.start:exc.start + 1].hex()} at offset "
                                f"{exc.start} of the line); re-save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except RecursionError:
                raise DataError(f"{where}: JSON nested too deeply to read; a Moment-DETR row is a flat object") from None
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON: {exc.msg}") from exc
            ann, n = _parse_line(row, where, strict)
            if require_windows and not ann.windows:
                raise DataError(f"{where}: qid {ann.qid!r} has no relevant_windows; training and evaluation need one")
            if ann.qid in seen:
                raise DataError(f"{where}: duplicate qid {ann.qid!r}")
            seen.add(ann.qid)
            items.append(ann)
            clipped += n
    if not items:
        raise DataError(f"annotation file {path} holds no rows")
    return AnnotationSet(items=items, source=str(path), clipped_windows=clipped)


def write_annotations(path: str | Path, annotations: Sequence[Annotation]) -> Path:
    """Write Moment-DETR JSONL (atomically: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for ann in annotations:
            fh.write(json.dumps(ann.to_json()) + "\n")
    tmp.replace(path)
    return path


def split_by_video(annotations: AnnotationSet, fraction: float, seed: int) -> tuple[AnnotationSet, AnnotationSet]:
    """Carve a validation set out of ``annotations`` by video, so no video is in both parts.

    The split depends only on the set of video ids and ``seed`` (not on file order), and keeps at least
    one video on each side.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {fraction}")
    vids = sorted({a.vid for a in annotations})
    if len(vids) < 2:
        raise DataError(f"{annotations.source}: need at least 2 videos to carve a validation split, got {len(vids)}")
    random.Random(seed).shuffle(vids)
    n_val = min(len(vids) - 1, max(1, round(fraction * len(vids))))
    val_vids = set(vids[:n_val])
    train = [a for a in annotations if a.vid not in val_vids]
    val = [a for a in annotations if a.vid in val_vids]
    src = annotations.source
    return (
        AnnotationSet(train, source=f"{src}[train]", clipped_windows=annotations.clipped_windows),
        AnnotationSet(val, source=f"{src}[val]"),
    )
