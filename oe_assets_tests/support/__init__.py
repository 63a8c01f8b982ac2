"""What the tests share: servers (the hostile API), helpers, and the fixtures (pytest plugins)."""
