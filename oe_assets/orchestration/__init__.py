"""The Dagster layer's helpers that are not definitions: resources' classes, partitions, metadata,
running the graph from Python, the instance configuration."""
