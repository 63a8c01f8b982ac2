"""The `celonis_model` layer: the tables the Celonis extractor builds, one asset per table."""
