"""Process-mining tables built in SQL from the Celonis-shaped model: event log, activity log."""
