"""What runs the engine: ``agent`` (agents, runner, idle strategies), ``affinity`` (CPU placement, memory
locking), ``aeron`` (media driver and clients), ``metrics`` (shared-memory blocks, Prometheus exporter),
``control`` (the supervisor's control block)."""
