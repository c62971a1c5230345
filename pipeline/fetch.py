"""Fetch the public annotation files from their home, check them by sha256 and convert them to Moment-DETR JSONL.

Charades-CG and ActivityNet-CG come from the VISA split files of ``YYJMJC/Compositional-Temporal-Grounding``,
pinned to a commit so the bytes never change under a hash: ``{vid: {duration, timestamps, sentences, ...}}``. The
conversion writes one row per sentence, ``qid = f"{vid}_{tag}_{i}"`` (tag ``train`` / ``test`` / ``composition``
/ ``word``, ``i`` the sentence's index in its video), exactly the rows of the team's ``../shared/data`` copies.

Layout under the data directory (see :mod:`pipeline.datasets`)::

    visa_original/{Charades-CG,ActivityNet_CG}/{train,test_trivial,novel_composition,novel_word}.json
    charades_cg/charades_cg_{train,test,novel_composition,novel_word}.jsonl
    activitynet_cg/anet_cg_{train,test,novel_composition,novel_word}.jsonl

Every write is atomic (a temporary file beside the target, then rename); a file already present with the right hash is not downloaded
again, and a converted JSONL already present is left alone, so an interrupted fetch resumes. The sha256 values
were computed from the team's copies, whose lengths and text match the repository's files at the pinned commits.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from pipeline.data_layout import SPLIT_FILES, resolve_data_dir
from pipeline.errors import ConfigError, DataError
from pipeline.load import VISA_TAGS
from pipeline.tables import atomic_path, atomic_write_bytes, sha256_file

__all__ = ["RemoteFile", "REMOTE_FILES", "fetch_dataset", "convert_visa"]

_REPO = "https://raw.githubusercontent.com/YYJMJC/Compositional-Temporal-Grounding"
#: ``$SHINE_DATA_BASE_URL`` replaces ``{_REPO}/{commit}`` (a mirror, or a local server in tests)
BASE_URL_ENV = "SHINE_DATA_BASE_URL"


@dataclass(frozen=True)
class RemoteFile:
    """One VISA split file: its path in the repository, the pinned commit and its sha256."""

    path: str
    commit: str
    sha256: str

    def url(self, base_url: str | None = None) -> str:
        base = (base_url or "").rstrip("/") or f"{_REPO}/{self.commit}"
        return f"{base}/{self.path}"


_CG, _ANET_A, _ANET_W = ("c5fd47eb92be3b5e30140da3352bdec993f667d5", "a41432e64169bb2739dde542fb1fade46acc9d6b",
                         "2372337e9166b8e26b83ce936a8474c6ae127290")
REMOTE_FILES: dict[str, dict[str, RemoteFile]] = {
    "charades-cg": {
        "train": RemoteFile("Charades-CG/train.json", _CG,
                            "c66556077d8b6a1fd7ee91641f994cd1341c11adfa4fc078434c9fe7a4b93d8d"),
        "test": RemoteFile("Charades-CG/test_trivial.json", _CG,
                           "45eec9d3c46187235309344ab937a065b409cbdc3f3f9d926da6fd05302d822d"),
        "novel_composition": RemoteFile("Charades-CG/novel_composition.json", _CG,
                                        "c92beda2c861bb0da356d94bba131d49e20a59d893d6e182bda1ee68a852514d"),
        "novel_word": RemoteFile("Charades-CG/novel_word.json", _CG,
                                 "f3ccd59c9f18e221028138faaf9bdddb5215e2550215ca62c8f24659168eb7f3"),
    },
    "anet-cg": {
        "train": RemoteFile("ActivityNet_CG/train.json", _ANET_A,
                            "31a6e0aa938f1f0d469bcb8d5492de7f9e9f77f74ba5676772db052057e26102"),
        "test": RemoteFile("ActivityNet_CG/test_trivial.json", _ANET_A,
                           "32c4d12ff1cdf35f4b48cf4d93bbb2c71beb802d693f57e0afc90347aaa937a4"),
        "novel_composition": RemoteFile("ActivityNet_CG/novel_composition.json", _ANET_A,
                                        "d44d2c456974a4661bf14008d6316926e3b04d7ab9d48ed694861dc28602fe1b"),
        "novel_word": RemoteFile("ActivityNet_CG/novel_word.json", _ANET_W,
                                 "74e071738ece6d75ab1237c04a9a8cdebc939d3d65b015181596a84ae14f782c"),
    },
}


def _download(client: httpx.Client, url: str, dest: Path, expected: str, retries: int) -> None:
    """Stream ``url`` to ``dest`` atomically; retry transport errors, 429 and 5xx (honouring Retry-After)."""
    for attempt in range(retries + 1):
        try:
            with client.stream("GET", url) as resp:
                if (resp.status_code == 429 or resp.status_code >= 500) and attempt < retries:
                    retry_after = resp.headers.get("retry-after", "")
                    time.sleep(min(float(retry_after), 30.0) if retry_after.isdigit() else 0.5 * 2**attempt)
                    continue
                resp.raise_for_status()
                with atomic_path(dest) as tmp:  # a failed or wrong download leaves dest untouched
                    h = hashlib.sha256()
                    with open(tmp, "wb") as fh:
                        for chunk in resp.iter_bytes(1 << 16):
                            fh.write(chunk)
                            h.update(chunk)
                    if h.hexdigest() != expected:
                        raise DataError(
                            f"{url}: sha256 {h.hexdigest()} does not match the pinned {expected}; nothing was "
                            f"written to {dest}. The source changed or the download was altered: check the URL "
                            f"(or ${BASE_URL_ENV}), or copy the original file to {dest} yourself")
            return
        except (httpx.TransportError, httpx.HTTPStatusError) as exc:
            if attempt < retries and isinstance(exc, httpx.TransportError):
                time.sleep(0.5 * 2**attempt)
                continue
            raise DataError(f"could not download {url}: {exc}. With no network, copy the file to {dest} "
                            f"(sha256 {expected}) and run the command again") from exc


def convert_visa(src: Path, dest: Path, tag: str) -> int:
    """Write ``src`` (VISA JSON) as Moment-DETR JSONL at ``dest`` atomically; returns the number of rows."""
    try:
        videos = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{src}: not a readable VISA JSON file ({exc}); delete it and fetch again") from exc
    rows: list[str] = []
    for vid, video in videos.items():
        sentences, stamps = video.get("sentences"), video.get("timestamps")
        if not isinstance(sentences, list) or not isinstance(stamps, list) or len(sentences) != len(stamps):
            raise DataError(f"{src}: video {vid!r} needs equally long 'sentences' and 'timestamps' lists, got "
                            f"{type(sentences).__name__} / {type(stamps).__name__}")
        for i, (sentence, window) in enumerate(zip(sentences, stamps)):
            rows.append(json.dumps({"qid": f"{vid}_{tag}_{i}", "query": sentence, "duration": video["duration"],
                                    "vid": vid, "relevant_windows": [window]}))
    atomic_write_bytes(dest, ("\n".join(rows) + "\n").encode("utf-8"))
    return len(rows)


def fetch_dataset(dataset: str, data_dir: str | Path | None = None, *, splits: list[str] | None = None,
                  base_url: str | None = None, timeout: float = 30.0, retries: int = 3,
                  progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Make every split of ``dataset`` present under the data directory; returns {split: JSONL path}.

    Present JSONL files are kept; present VISA files with the right hash are not downloaded again.
    """
    if dataset not in REMOTE_FILES:
        raise ConfigError(f"no public source known for dataset {dataset!r}; known: {sorted(REMOTE_FILES)}")
    remote = REMOTE_FILES[dataset]
    wanted = splits or list(remote)
    unknown = sorted(set(wanted) - set(remote))
    if unknown:
        raise ConfigError(f"unknown split(s) {unknown} of {dataset}; known: {sorted(remote)}")
    root = Path(data_dir) if data_dir else resolve_data_dir()
    base_url = base_url or os.environ.get(BASE_URL_ENV) or None
    say = progress or (lambda _msg: None)
    out: dict[str, Path] = {}
    timeouts = httpx.Timeout(timeout, connect=min(timeout, 10.0))
    with httpx.Client(timeout=timeouts, follow_redirects=True) as client:
        for split in wanted:
            target = root / SPLIT_FILES[dataset][split]
            out[split] = target
            if target.is_file():
                say(f"{dataset} {split}: {target} present, kept")
                continue
            rf = remote[split]
            raw = root / "visa_original" / rf.path
            if raw.is_file():
                got = sha256_file(raw)
                if got != rf.sha256:
                    raise DataError(f"{raw}: sha256 {got} does not match the pinned {rf.sha256}; delete it to "
                                    "download the original again")
                say(f"{dataset} {split}: {raw} present, sha256 ok")
            else:
                say(f"{dataset} {split}: downloading {rf.url(base_url)}")
                _download(client, rf.url(base_url), raw, rf.sha256, retries)
            n = convert_visa(raw, target, VISA_TAGS[Path(rf.path).stem])
            say(f"{dataset} {split}: {n} queries -> {target}")
    return out
