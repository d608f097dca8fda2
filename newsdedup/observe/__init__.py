"""What operators and pipelines watch: the events feed, metrics kept in Redis, and structured logs."""
