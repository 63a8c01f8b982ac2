"""Automation: the two jobs, the finished-runs sensor and the hourly catalog schedule."""
