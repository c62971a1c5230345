"""A local provider server for tests, benchmarks and dry runs: real wire formats, limits and faults, no network."""

from __future__ import annotations

from pipeline.llm.testing.server import FAULTS, FaultPlan, ProviderServer

__all__ = ["ProviderServer", "FaultPlan", "FAULTS"]
