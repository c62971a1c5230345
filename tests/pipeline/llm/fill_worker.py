"""Subprocess body of the kill -9 tests: fill N synthetic requests against a running provider server.

    python -m tests.pipeline.llm.fill_worker NAME URL WORKDIR CACHE N
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pipeline.llm import make_llm_backend
from tests.pipeline.llm.helpers import backend_config, dictionary, make_requests


def main() -> None:
    name, url, workdir, cache, n = sys.argv[1:6]
    cfg = backend_config(name, url, Path(cache).parent, cache_dir=cache, limits={"max_in_flight": 2},
                         batch={"poll_interval": 0.05})
    backend = make_llm_backend(cfg, dictionary(), Path(workdir))

    async def go() -> None:
        await backend.fill_batch(make_requests(int(n)))
        await backend.close()

    asyncio.run(go())
    print("done", flush=True)


if __name__ == "__main__":
    main()
