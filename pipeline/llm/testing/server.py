"""A local stand-in for the OpenAI, Anthropic and Gemini HTTP APIs, reached through the real SDKs.

Routes (one plain handler function each): OpenAI ``POST /v1/chat/completions``, ``POST /v1/files``,
``GET /v1/files/{id}/content``, ``POST|GET /v1/batches``, ``GET /v1/batches/{id}``; Anthropic ``POST /v1/messages``,
``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}``, ``GET /v1/messages/batches/{id}/results``;
Gemini ``POST /v1beta/models/{model}:generateContent``. Replies carry usage fields and rate-limit headers; past
the configured RPM/TPM it answers 429 with Retry-After. Faults (``FaultPlan``): 500/503, hang (client timeout),
malformed JSON, a reply cut at ``length``, a connection reset, a refusal, an answer with masks left unfilled, a 429
the client could not foresee, a complete answer with an unknown stop reason (``stop_unknown``).

    python -m pipeline.llm.testing.server --rpm 600 --tpm 400000    # prints its URL, serves until Ctrl-C
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from pipeline.llm.testing import routes
from pipeline.llm.testing.http import HTTPServer, Request, Response

__all__ = ["ProviderServer", "FaultPlan", "FAULTS"]

#: injectable fault kinds
FAULTS: tuple[str, ...] = ("500", "503", "429", "hang", "malformed", "length", "reset", "refusal", "invalid",
                           "stop_unknown")


@dataclass
class FaultPlan:
    """Faults to inject: ``script`` is consumed first (one per completion request), then ``rate`` at random."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ("500", "503", "hang", "malformed", "length", "reset")
    script: deque[str] = field(default_factory=deque)
    seed: int = 0


class _Bucket:
    def __init__(self, per_minute: float, burst_s: float) -> None:
        self.rate = per_minute / 60.0
        self.cap = max(1.0, per_minute * burst_s / 60.0)
        self.level = self.cap
        self.t = time.monotonic()

    def take(self, n: float) -> float:
        """0 when ``n`` was taken, else seconds until it would fit."""
        now = time.monotonic()
        self.level = min(self.cap, self.level + (now - self.t) * self.rate)
        self.t = now
        need = min(n, self.cap)
        if self.level >= need:
            self.level -= n
            return 0.0
        return (need - self.level) / self.rate


class ProviderServer:
    """Start with ``with ProviderServer(rpm=600) as srv:``; point an SDK at ``srv.url`` (+ ``/v1`` for OpenAI)."""

    def __init__(self, rpm: int = 0, tpm: int = 0, burst_s: float = 1.0, latency_s: float = 0.0,
                 faults: FaultPlan | None = None, batch_delay_s: float = 0.0, batch_expire: float = 0.0,
                 hang_s: float = 30.0, require_key: bool = True) -> None:
        self.rpm_bucket = _Bucket(rpm, burst_s) if rpm else None
        self.tpm_bucket = _Bucket(tpm, burst_s) if tpm else None
        self.latency_s = latency_s
        self.faults = faults or FaultPlan()
        self.batch_delay_s = batch_delay_s
        self.batch_expire = batch_expire
        self.require_key = require_key
        self.lock = threading.Lock()
        self.rng = random.Random(self.faults.seed)
        self.counts: Counter[str] = Counter()
        #: (time, route, status) of every request
        self.log: list[tuple[float, str, int]] = []
        #: original query of every completion that was answered (billed)
        self.answered: list[str] = []
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.seen_keys: set[str] = set()
        #: keys answered with 401 (a revoked key)
        self.reject_keys: set[str] = set()
        #: every request header value received (tests check that planted secrets did reach the provider)
        self.seen_headers: set[tuple[str, str]] = set()
        self._http = HTTPServer(self.dispatch, hang_s=hang_s)
        self.url = ""

    def __enter__(self) -> ProviderServer:
        self.url = self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    # --- shared by the handlers
    def next_fault(self) -> str:
        with self.lock:
            if self.faults.script:
                return self.faults.script.popleft()
            if self.faults.rate and self.rng.random() < self.faults.rate:
                return self.rng.choice(self.faults.kinds)
        return ""

    def admit(self, tokens: int) -> float:
        """0 when a request of ``tokens`` fits the RPM/TPM limits, else the seconds to wait (a 429)."""
        with self.lock:
            wait = self.rpm_bucket.take(1) if self.rpm_bucket else 0.0
            if not wait and self.tpm_bucket:
                wait = self.tpm_bucket.take(tokens)
                if wait and self.rpm_bucket:
                    self.rpm_bucket.level += 1  # refused: give the request back
            if wait:
                self.counts["429"] += 1
            return wait

    def limit_headers(self, style: str) -> dict[str, str]:
        """Rate-limit headers in OpenAI (``x-ratelimit-*``) or Anthropic (``anthropic-ratelimit-*``) style."""
        if not self.rpm_bucket:
            return {}
        b = self.rpm_bucket
        left, reset = int(max(0.0, b.level)), max(0.0, (b.cap - b.level) / b.rate)
        if style == "anthropic":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + reset))
            return {"anthropic-ratelimit-requests-limit": str(int(b.rate * 60)),
                    "anthropic-ratelimit-requests-remaining": str(left), "anthropic-ratelimit-requests-reset": stamp}
        return {"x-ratelimit-limit-requests": str(int(b.rate * 60)), "x-ratelimit-remaining-requests": str(left),
                "x-ratelimit-reset-requests": f"{reset:.3f}s"}

    async def dispatch(self, req: Request) -> Response:
        """Route a request to its handler; log it."""
        with self.lock:
            self.seen_headers.update((k.lower(), v) for k, v in req.headers.items())
        for key in ("authorization", "x-api-key", "x-goog-api-key"):
            if key in req.headers:
                self.seen_keys.add(req.headers[key].removeprefix("Bearer "))
        handler, params = routes.match(req.method, req.path)
        if handler is None:
            resp = Response.of_json({"error": {"message": f"no route {req.method} {req.path}"}}, 404)
        elif self.reject_keys & self.seen_keys:
            resp = Response.of_json({"error": {"message": "invalid api key", "type": "authentication_error"}}, 401)
        elif self.require_key and not self.seen_keys and "/files/" not in req.path:
            resp = Response.of_json({"error": {"message": "missing key", "type": "authentication_error"}}, 401)
        else:
            resp = await handler(self, req, **params)
        with self.lock:
            self.counts[f"{req.method} {req.path.split(':')[-1] if ':' in req.path else routes.route_name(req.path)}"] += 1
            self.counts[f"status_{resp.status}" if not resp.action else resp.action] += 1
            self.log.append((time.monotonic(), req.path, resp.status))
        return resp


def main() -> None:  # pragma: no cover - a manual tool
    """Serve until interrupted (for trying the backends by hand)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpm", type=int, default=0)
    parser.add_argument("--tpm", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    args = parser.parse_args()
    with ProviderServer(rpm=args.rpm, tpm=args.tpm, faults=FaultPlan(rate=args.fault_rate)) as srv:
        print(f"serving on {srv.url}  (OpenAI base_url {srv.url}/v1)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":  # pragma: no cover
    main()
