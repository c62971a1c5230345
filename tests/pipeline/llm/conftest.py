"""Fixtures of the LLM backend tests: fake keys in the environment and the local provider server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.llm import make_llm_backend
from pipeline.llm.testing import ProviderServer
from tests.pipeline.llm.helpers import SECRETS, backend_config, dictionary


@pytest.fixture(autouse=True)
def fake_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("SHINE_CACHE_DIR", raising=False)
    return SECRETS


@pytest.fixture
def server() -> Iterator[ProviderServer]:
    with ProviderServer(hang_s=3.0) as srv:
        yield srv


@pytest.fixture
def run_fill(tmp_path: Path):
    """run_fill(name, srv, reqs, workdir=..., **options) -> (responses, stats); closes the backend."""

    def run(name: str, srv: ProviderServer, reqs: list[Any], workdir: Path | None = None, **options: Any):
        cfg = backend_config(name, srv.url, tmp_path, **options)
        backend = make_llm_backend(cfg, dictionary(), workdir or tmp_path / "run")

        async def go():
            try:
                return await backend.fill_batch(reqs)
            finally:
                await backend.close()

        responses = asyncio.run(go())
        return responses, backend.stats()

    return run
