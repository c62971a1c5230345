"""Stage 1, load: Moment-DETR JSONL or the original VISA JSON into ``queries.parquet`` rows.

Every problem is reported with the file, the line (JSONL) or the video id (VISA JSON), the offending value
and the fix. Windows that end after the video's duration are clipped and counted (Charades-CG train has
about 1.2k of them); a window that starts after the end, is inverted or negative is an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import DataError

__all__ = ["WindowError", "LoadResult", "load_annotations", "load_jsonl", "load_visa_json", "VISA_TAGS"]

#: qid tag of each original VISA split file (qid = f"{vid}_{tag}_{i}", see shared/data/README.md)
VISA_TAGS: dict[str, str] = {
    "train": "train",
    "test_trivial": "test",
    "novel_composition": "composition",
    "novel_word": "word",
}


@dataclass
class LoadResult:
    """Rows ready for ``queries.parquet`` plus what was clipped or skipped."""

    rows: list[dict[str, Any]]
    clipped_windows: int
    path: Path
    #: queries dropped under ``invalid_windows="skip"``: {"qid", "where", "reason"}
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


class WindowError(DataError):
    """A window that cannot be right (negative, inverted, empty, after the video's end)."""


def _check_number(value: Any, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{where}: {what} must be a finite number, got {value!r}")
    return float(value)


def _clean_windows(windows: Any, duration: float, where: str) -> tuple[list[list[float]], int]:
    """Validate windows, clip their ends to ``duration``; return (windows, number clipped)."""
    if not isinstance(windows, list) or not windows:
        raise DataError(f"{where}: relevant_windows must be a non-empty list of [start, end], got {windows!r}")
    out: list[list[float]] = []
    clipped = 0
    for w in windows:
        if not isinstance(w, (list, tuple)) or len(w) != 2:
            raise DataError(f"{where}: each window must be [start, end], got {w!r}")
        start = _check_number(w[0], "window start", where)
        end = _check_number(w[1], "window end", where)
        if start < 0 or end < 0:
            raise WindowError(f"{where}: negative window {[start, end]}; times are seconds from the video start")
        if end <= start:
            raise WindowError(f"{where}: inverted or empty window {[start, end]}; expected start < end")
        if start >= duration:
            raise WindowError(
                f"{where}: window {[start, end]} starts at or after the video's duration {duration}; "
                "fix the duration or drop the query"
            )
        if end > duration:
            end = duration
            clipped += 1
        out.append([start, end])
    return out, clipped


def _make_row(
    qid: Any, query: Any, vid: Any, duration: Any, windows: Any, split: str, source: Path, line: int, where: str
) -> tuple[dict[str, Any], int]:
    if not isinstance(qid, (str, int)) or isinstance(qid, bool) or str(qid) == "":
        raise DataError(f"{where}: qid must be a non-empty string or integer, got {qid!r}")
    if not isinstance(query, str) or not query.strip():
        raise DataError(f"{where} (qid {qid}): empty query; give the sentence or drop the line")
    if not isinstance(vid, (str, int)) or str(vid) == "":
        raise DataError(f"{where} (qid {qid}): vid must be a non-empty string, got {vid!r}")
    dur = _check_number(duration, "duration", f"{where} (qid {qid})")
    if dur <= 0:
        raise DataError(f"{where} (qid {qid}): duration must be > 0 seconds, got {dur}")
    wins, clipped = _clean_windows(windows, dur, f"{where} (qid {qid})")
    row = {
        "qid": str(qid),
        "vid": str(vid),
        "query": query.strip(),
        "duration": dur,
        "windows": wins,
        "split": split,
        "source": source.name,
        "line": line,
    }
    return row, clipped


def load_jsonl(path: Path, split: str, invalid_windows: str = "error") -> LoadResult:
    """Read Moment-DETR JSONL (``qid, query, vid, duration, relevant_windows``), one query per line."""
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    clipped = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); fix or remove the line") from exc
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object per line, got {type(obj).__name__}")
            missing = [k for k in ("qid", "query", "vid", "duration", "relevant_windows") if k not in obj]
            if missing:
                raise DataError(f"{where}: missing field(s) {missing}; Moment-DETR JSONL needs qid, query, vid, duration, relevant_windows")
            try:
                row, n = _make_row(
                    obj["qid"], obj["query"], obj["vid"], obj["duration"], obj["relevant_windows"], split, path, lineno, where
                )
            except WindowError as exc:
                if invalid_windows != "skip":
                    raise
                skipped.append({"qid": str(obj["qid"]), "where": where, "reason": str(exc)})
                continue
            if row["qid"] in seen:
                raise DataError(f"{where}: duplicate qid {row['qid']!r} (first on line {seen[row['qid']]}); qids must be unique")
            seen[row["qid"]] = lineno
            clipped += n
            rows.append(row)
    return LoadResult(rows, clipped, path, skipped)


def load_visa_json(path: Path, split: str, tag: str | None = None, invalid_windows: str = "error") -> LoadResult:
    """Read an original VISA split file ``{vid: {duration, timestamps, sentences}}``.

    qids are ``f"{vid}_{tag}_{i}"``; ``tag`` defaults to the one of the file name (train.json -> train, ...).
    """
    tag = tag or VISA_TAGS.get(path.stem)
    if tag is None:
        raise DataError(
            f"{path}: cannot tell the qid tag from the file name; name it one of "
            f"{sorted(VISA_TAGS)} .json or pass --tag"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object keyed by video id, got {type(data).__name__}")
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    clipped = 0
    for vid, entry in data.items():
        where = f"{path} (vid {vid})"
        if not isinstance(entry, dict) or not {"duration", "timestamps", "sentences"} <= set(entry):
            raise DataError(f"{where}: expected an object with duration, timestamps and sentences")
        sentences, stamps = entry["sentences"], entry["timestamps"]
        if not isinstance(sentences, list) or not isinstance(stamps, list) or len(sentences) != len(stamps):
            raise DataError(f"{where}: sentences and timestamps must be lists of the same length")
        for i, (sentence, window) in enumerate(zip(sentences, stamps)):
            try:
                row, n = _make_row(f"{vid}_{tag}_{i}", sentence, vid, entry["duration"], [window], split, path, 0, where)
            except WindowError as exc:
                if invalid_windows != "skip":
                    raise
                skipped.append({"qid": f"{vid}_{tag}_{i}", "where": where, "reason": str(exc)})
                continue
            clipped += n
            rows.append(row)
    return LoadResult(rows, clipped, path, skipped)


def load_annotations(path: str | Path, split: str, tag: str | None = None, invalid_windows: str = "error") -> LoadResult:
    """Load one annotation file, choosing the reader by extension (``.jsonl`` or ``.json``).

    ``invalid_windows="skip"`` drops queries with impossible windows (listed in ``LoadResult.skipped``)
    instead of stopping at the first one.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"annotation file {path} does not exist; pass --input with an existing file or set "
            "--data-dir / SHINE_DATA_DIR to the folder holding the data set"
        )
    if path.suffix == ".jsonl":
        result = load_jsonl(path, split, invalid_windows)
    elif path.suffix == ".json":
        result = load_visa_json(path, split, tag, invalid_windows)
    else:
        raise DataError(f"{path}: unknown annotation format {path.suffix!r}; expected .jsonl (Moment-DETR) or .json (VISA)")
    if not result.rows:
        raise DataError(f"{path}: no queries found; the file is empty")
    return result
