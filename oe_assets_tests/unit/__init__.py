"""Pure functions and objects: no server, no file, no run."""
