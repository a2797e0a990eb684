"""Past one process: shards as local processes or Ray tasks, one summary."""
