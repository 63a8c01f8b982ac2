"""The `process_mining` layer: the event log and the activity log."""
