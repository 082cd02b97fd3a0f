"""``python -m agentinstruct.testing --faults 0.2 --latency 0.3``: serve the fault server."""

from agentinstruct.testing.fault_server import main

main()
