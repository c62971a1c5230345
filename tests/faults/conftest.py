"""Fault modules run the ``shine`` CLI against the session's one shared Prefect server (tests/prefect_server.py).

Each CLI run that reaches a Prefect flow would otherwise start Prefect's temporary server of its own (most of a
short run's time on 2 cores). Cases that test the default (ephemeral) path call ``cli_env(..., ephemeral=True)``.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def _fault_modules_use_the_shared_prefect_server(cli_on_shared_prefect_server) -> None:
    """Autouse and module-scoped: on before the modules' own module fixtures run the CLI."""
