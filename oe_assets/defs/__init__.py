"""The Dagster layer: assets, checks, sensors and resources that wire the pure core."""
