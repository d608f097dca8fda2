"""Queue consumers: entry points over the engine's worker loop."""
