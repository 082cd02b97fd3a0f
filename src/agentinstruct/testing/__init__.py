"""Test support shipped with the package so tests and benchmarks share it (no model, no network)."""

from agentinstruct.testing.fault_server import (
    FAULT_KINDS,
    FaultConfig,
    FaultServer,
    ServerCounters,
    default_responder,
    value_for_schema,
)

__all__ = ["FAULT_KINDS", "FaultConfig", "FaultServer", "ServerCounters", "default_responder",
           "value_for_schema"]
