"""Examples of a user's own assets over our tables (not part of the project's graph)."""
