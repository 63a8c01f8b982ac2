"""Incremental refresh: what changed in OE since the last look, as partitions to refresh."""
