"""Stage 1, load: Moment-DETR JSONL or the original VISA JSON into ``queries.parquet`` rows.

Every problem is reported with the file, the line (JSONL) or the video id (VISA JSON), the offending value
and the fix. Windows follow the one rule of :mod:`shine.windows` (shared with the trainer): ends after the
video's duration are clipped and counted (Charades-CG train has about 1.2k of them); a window that starts
after the end, is zero-length, inverted or negative is an error.

Nothing is lost silently: bytes that are not UTF-8 name the line and byte, a key that appears twice in a JSON
object (two entries for one video in a VISA file, which ``json`` would quietly merge into the last) names the
key, a query longer than ``load.max_query_chars`` names the qid, and a file whose queries do not look English
gets one warning with their share (the tagger and the dictionary are English).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import DataError
from shine.windows import WindowFormatError, WindowRuleError, check_duration, check_window

__all__ = [
    "WindowError",
    "LoadResult",
    "load_annotations",
    "load_jsonl",
    "load_visa_json",
    "read_json_document",
    "iter_jsonl",
    "read_queries",
    "non_english_share",
    "VISA_TAGS",
    "DEFAULT_MAX_QUERY_CHARS",
]

#: qid tag of each original VISA split file (qid = f"{vid}_{tag}_{i}", see shared/data/README.md)
VISA_TAGS: dict[str, str] = {
    "train": "train",
    "test_trivial": "test",
    "novel_composition": "composition",
    "novel_word": "word",
}

#: ``pipeline.config.LoadConfig.max_query_chars``'s default (kept here so this module needs no config)
DEFAULT_MAX_QUERY_CHARS = 5000

#: warn when at least this share of a file's queries does not look English (1 in 92k public queries does)
NON_ENGLISH_WARN_SHARE = 0.01

log = logging.getLogger("pipeline.load")


@dataclass
class LoadResult:
    """Rows ready for ``queries.parquet`` plus what was clipped or skipped."""

    rows: list[dict[str, Any]]
    clipped_windows: int
    path: Path
    #: queries dropped under ``invalid_windows="skip"``: {"qid", "where", "reason"}
    skipped: list[dict[str, str]] = field(default_factory=list)
    #: share of the queries that do not look English (:func:`non_english_share`)
    non_english: float = 0.0

    def __len__(self) -> int:
        return len(self.rows)


class WindowError(DataError):
    """A window that cannot be right (negative, inverted, empty, after the video's end)."""


# ------------------------------------------------------------------------------------------ reading JSON


class _DuplicateKey(DataError):
    """A JSON object with one key twice; each reader turns it into a DataError naming the file (and line)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: ``json`` keeps the last of two equal keys without a word; we refuse them."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _decode(data: bytes, path: Path, line: int | None = None) -> str:
    """UTF-8 text (a leading BOM dropped); a :class:`DataError` naming the line and byte otherwise."""
    try:
        return data.decode("utf-8-sig" if line in (None, 1) else "utf-8")
    except UnicodeDecodeError as exc:
        at = line if line is not None else data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start:exc.start + 1].hex()
        utf16 = " (it looks like UTF-16)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(f"{path}:{at}: not UTF-8 text{utf16} (byte 0x{bad} at offset {exc.start}"
                        f"{' of the line' if line is not None else ''}); re-save the file as UTF-8") from exc


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"{path} is a directory, not an annotation file; pass the .jsonl or .json file inside it")
    if not path.is_file():
        raise DataError(
            f"annotation file {path} does not exist; pass --input with an existing file or set "
            "--data-dir / SHINE_DATA_DIR to the folder holding the data set"
        )


def iter_jsonl(path: Path):
    """Yield ``(line number, object)`` for every non-blank line of a JSONL file; errors name ``file:line``."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = _decode(raw, path, lineno)
            if not text.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(text, object_pairs_hook=_no_duplicates)
            except _DuplicateKey as exc:
                raise DataError(f"{where}: field {exc.key!r} appears twice in one object; keep one") from None
            except RecursionError:
                raise DataError(f"{where}: JSON nested too deeply to read; a Moment-DETR row is a flat object") from None
            except json.JSONDecodeError as exc:
                hint = _looks_like_json_document(path) if lineno == 1 else ""
                raise DataError(hint or f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); fix or remove the line") from exc
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object per line, got {type(obj).__name__}; "
                                "Moment-DETR JSONL has one {\"qid\": ..., \"query\": ...} object per line")
            yield lineno, obj


def _looks_like_json_document(path: Path) -> str:
    try:
        json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    return f"{path}: looks like one JSON document (VISA JSON), not JSONL; rename it to {path.with_suffix('.json').name}"


def read_json_document(path: Path) -> Any:
    """A whole JSON file, refusing duplicate keys; a JSONL file saved as ``.json`` is named as such."""
    text = _decode(path.read_bytes(), path)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise DataError(f"{path}: key {exc.key!r} appears twice; json would keep only the last entry. "
                        "Merge the two entries into one (or rename one)") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to read; a VISA file is {{vid: {{duration, timestamps, "
                        "sentences}}}}") from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and exc.lineno > 1 and text.lstrip().startswith("{"):
            raise DataError(f"{path}: looks like JSONL (one JSON object per line), not one JSON document; "
                            f"rename it to {path.with_suffix('.jsonl').name}") from exc
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}); fix the file") from exc


# ------------------------------------------------------------------------------------------ rows


def _make_row(
    qid: Any, query: Any, vid: Any, duration: Any, windows: Any, split: str, source: Path, line: int, where: str,
    max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
) -> tuple[dict[str, Any], int]:
    if not isinstance(qid, (str, int)) or isinstance(qid, bool) or str(qid) == "":
        raise DataError(f"{where}: qid must be a non-empty string or integer, got {qid!r:.80}")
    if not isinstance(query, str) or not query.strip():
        raise DataError(f"{where} (qid {qid}): empty query; give the sentence or drop the line")
    if len(query) > max_query_chars:
        raise DataError(f"{where} (qid {qid}): query of {len(query):,} characters is longer than the limit of "
                        f"{max_query_chars:,} (load.max_query_chars; spaCy refuses texts over 1,000,000); "
                        "shorten it or drop the line")
    if not isinstance(vid, (str, int)) or isinstance(vid, bool) or str(vid) == "":
        raise DataError(f"{where} (qid {qid}): vid must be a non-empty string, got {vid!r:.80}")
    try:
        dur = check_duration(duration)
        if not isinstance(windows, list) or not windows:
            raise WindowFormatError(f"relevant_windows must be a non-empty list of [start, end], got {windows!r:.80}")
        checked = [check_window(w, dur) for w in windows]
    except WindowRuleError as exc:
        raise WindowError(f"{where} (qid {qid}): {exc}") from None
    except WindowFormatError as exc:
        raise DataError(f"{where} (qid {qid}): {exc}") from None
    row = {
        "qid": str(qid),
        "vid": str(vid),
        "query": query.strip(),
        "duration": dur,
        "windows": [[start, end] for start, end, _ in checked],
        "split": split,
        "source": source.name,
        "line": line,
    }
    return row, sum(clipped for _, _, clipped in checked)


def load_jsonl(path: Path, split: str, invalid_windows: str = "error",
               max_query_chars: int = DEFAULT_MAX_QUERY_CHARS) -> LoadResult:
    """Read Moment-DETR JSONL (``qid, query, vid, duration, relevant_windows``), one query per line."""
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    clipped = 0
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        missing = [k for k in ("qid", "query", "vid", "duration", "relevant_windows") if k not in obj]
        if missing:
            raise DataError(f"{where}: missing field(s) {missing}; Moment-DETR JSONL needs qid, query, vid, duration, relevant_windows")
        try:
            row, n = _make_row(obj["qid"], obj["query"], obj["vid"], obj["duration"], obj["relevant_windows"],
                               split, path, lineno, where, max_query_chars)
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


def load_visa_json(path: Path, split: str, tag: str | None = None, invalid_windows: str = "error",
                   max_query_chars: int = DEFAULT_MAX_QUERY_CHARS) -> LoadResult:
    """Read an original VISA split file ``{vid: {duration, timestamps, sentences}}``.

    qids are ``f"{vid}_{tag}_{i}"``; ``tag`` defaults to the one of the file name (train.json -> train, ...).
    A video key that appears twice is an error naming it (``json`` would keep only the last entry).
    """
    tag = tag or VISA_TAGS.get(path.stem)
    if tag is None:
        raise DataError(
            f"{path}: cannot tell the qid tag from the file name; name it one of "
            f"{sorted(VISA_TAGS)} .json or pass --tag"
        )
    data = read_json_document(path)
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
                row, n = _make_row(f"{vid}_{tag}_{i}", sentence, vid, entry["duration"], [window], split, path, 0,
                                   where, max_query_chars)
            except WindowError as exc:
                if invalid_windows != "skip":
                    raise
                skipped.append({"qid": f"{vid}_{tag}_{i}", "where": where, "reason": str(exc)})
                continue
            clipped += n
            rows.append(row)
    return LoadResult(rows, clipped, path, skipped)


def load_annotations(path: str | Path, split: str, tag: str | None = None, invalid_windows: str = "error",
                     max_query_chars: int = DEFAULT_MAX_QUERY_CHARS) -> LoadResult:
    """Load one annotation file, choosing the reader by extension (``.jsonl`` or ``.json``).

    ``invalid_windows="skip"`` drops queries with impossible windows (listed in ``LoadResult.skipped``)
    instead of stopping at the first one. Logs one warning when the queries do not look English.
    """
    path = Path(path)
    _check_is_file(path)
    if path.suffix == ".jsonl":
        result = load_jsonl(path, split, invalid_windows, max_query_chars)
    elif path.suffix == ".json":
        result = load_visa_json(path, split, tag, invalid_windows, max_query_chars)
    else:
        raise DataError(f"{path}: unknown annotation format {path.suffix!r}; expected .jsonl (Moment-DETR) or .json (VISA)")
    if not result.rows:
        raise DataError(f"{path}: no queries found; the file is empty")
    result.non_english = non_english_share(r["query"] for r in result.rows)
    if result.non_english >= NON_ENGLISH_WARN_SHARE:
        log.warning("%s: %.1f%% of the %d queries do not look English (mostly non-ASCII letters, or more "
                    "non-English than English function words); the tagger, the masks and the dictionary are "
                    "English, so their negatives will be poor", path, 100 * result.non_english, len(result.rows))
    return result


def read_queries(path: str | Path) -> list[tuple[str, str]]:
    """``(qid, query)`` of every query of an annotation file, without checking windows (for ``shine estimate``).

    Same decoding and JSON checks as :func:`load_annotations`: non-UTF-8 bytes, array lines, duplicate keys
    and JSONL saved as ``.json`` each get one clear error.
    """
    path = Path(path)
    _check_is_file(path)
    out: list[tuple[str, str]] = []
    if path.suffix == ".json":
        data = read_json_document(path)
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a VISA object keyed by video id, got {type(data).__name__}")
        for vid, entry in data.items():
            sentences = entry.get("sentences") if isinstance(entry, dict) else None
            if not isinstance(sentences, list):
                raise DataError(f"{path} (vid {vid}): expected an object with a list of sentences")
            out += [(f"{vid}_{i}", str(s)) for i, s in enumerate(sentences)]
    else:
        for lineno, obj in iter_jsonl(path):
            if not isinstance(obj.get("query"), str) or "qid" not in obj:
                raise DataError(f"{path}:{lineno}: expected a JSON object with qid and query (a string)")
            out.append((str(obj["qid"]), obj["query"]))
    if not out:
        raise DataError(f"{path}: no queries found; the file is empty")
    return out


# ------------------------------------------------------------------------------------------ language

_WORD = re.compile(r"[^\W\d_]+")
#: English function words common in captions
_ENGLISH = frozenset(
    "a an the is are was were be been and or but of to in on at by for with from into onto up down out over off "
    "then than while as it its he she they his her their them him this that these those there here who which what "
    "where when after before again some another".split()
)
#: frequent function words of German, Spanish, French, Dutch, Italian, Swedish that English captions lack
_FOREIGN = frozenset(
    "der die das und ist ein eine einen einem mit auf nicht sich zu den dem von el la los las una unos unas y "
    "está están con por para del al le les une des du et est dans avec sur il elle ils pour het een de en naar "
    "zijn op och ett är att på lo gli della di che sono".split()
)


def _looks_non_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    if sum(not c.isascii() for c in letters) > 0.3 * len(letters):
        return True
    words = _WORD.findall(text.lower())
    foreign = sum(w in _FOREIGN for w in words)
    return foreign >= 2 and foreign > sum(w in _ENGLISH for w in words)


def non_english_share(queries) -> float:
    """Share of ``queries`` that do not look English: mostly non-ASCII letters (over 30 %), or at least two
    function words of another European language and more of them than English ones. A cheap heuristic
    (no model): 1 of the 92k public Charades-CG / ActivityNet-CG queries is flagged (an Italian title card).

    >>> non_english_share(["person opens the door.", "Eine Person öffnet die Tür und geht."])
    0.5
    """
    flags = [_looks_non_english(q) for q in queries]
    return sum(flags) / len(flags) if flags else 0.0
