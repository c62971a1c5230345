"""The append-only ledger: one JSON line per attempt (billed or not) and per cache hit, in the run's directory.

A billed answer is fsync'd before the caller moves on, with its text, so a run killed with ``kill -9`` and resumed
replays what it already paid for instead of asking again: no row is billed twice. A torn last line (the kill
landed mid-write) is skipped on read.

Record fields: ts, qid, unit, call, backend, model, status, attempt (retry number), ask (re-ask number), billed,
prompt_tokens, completion_tokens, cost_usd, latency_s, cache_hit, and for ``ok`` the reply and finish reason.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Ledger", "LedgerState", "read_ledger"]


@dataclass
class LedgerState:
    """What a resumed run needs from an existing ledger."""

    #: call key -> the ``ok`` record of an answer already paid for
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    spent_usd: float = 0.0
    billed_requests: int = 0


def read_ledger(path: Path) -> tuple[list[dict[str, Any]], LedgerState]:
    """All intact records of ``path`` and the resume state built from them."""
    records: list[dict[str, Any]] = []
    state = LedgerState()
    if not path.is_file():
        return records, state
    with path.open("rb") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn line from a kill mid-write
            records.append(rec)
            if rec.get("billed"):
                state.billed_requests += 1
                state.spent_usd += float(rec.get("cost_usd") or 0.0)
            if rec.get("status") == "ok" and rec.get("call"):
                state.replies.setdefault(rec["call"], rec)
    return records, state


class Ledger:
    """Appends records to ``path`` (JSON lines); ``sync=True`` fsyncs before returning."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fh = path.open("ab")
        # start on a fresh line if the previous process died mid-record
        if self._fh.tell() > 0:
            with path.open("rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    self._fh.write(b"\n")

    def append(self, record: dict[str, Any], sync: bool = True) -> None:
        """Write one record; billed records pass ``sync=True`` so a crash never loses what was paid for."""
        line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        with self._lock:
            self._fh.write(line)
            if sync:
                self._fh.flush()
                os.fsync(self._fh.fileno())

    def extend(self, records: list[dict[str, Any]]) -> None:
        """Write many records with one fsync (cache hits come by the thousand)."""
        if not records:
            return
        blob = b"".join((json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n").encode() for r in records)
        with self._lock:
            self._fh.write(blob)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def flush(self) -> None:
        """Push buffered records to disk."""
        with self._lock:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Flush and close (idempotent)."""
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
