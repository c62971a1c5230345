"""Session-wide test settings: offline, project-local Prefect home, data from ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Prefect reads these at import time, so they are set before any test module imports it.
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SHINE_DATA_DIR", str(SHARED_DATA))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The public annotation files (../shared/data); tests that need them skip loudly when absent."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"expected the public annotation files at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect backend (SQLite) for every flow run of the test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session", autouse=True)
def _shared_prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """Where the session's shared Prefect server lives (started on first use only) and its stop at session end.

    tests/faults/harness.py:cli_env points CLI subprocesses at it (tests/prefect_server.py says why); a session
    that never asks for it starts nothing.
    """
    from tests.prefect_server import SESSION

    SESSION.base = tmp_path_factory.mktemp("shared-prefect-server")
    try:
        yield SESSION
    finally:
        SESSION.stop()


@pytest.fixture(scope="module")
def cli_on_shared_prefect_server():
    """CLI runs of the module (tests/faults/harness.py:cli_env) reach the session's shared Prefect server.

    Module-scoped so it is on before a module's own module fixtures run the CLI; tests/faults uses it for every
    module (tests/faults/conftest.py), other modules ask for it by name.
    """
    from tests.faults import harness

    harness.SHARED_SERVER = True
    try:
        yield
    finally:
        harness.SHARED_SERVER = False
