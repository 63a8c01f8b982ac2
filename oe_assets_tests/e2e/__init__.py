"""The product as a user meets it: `oe-assets` processes, `dagster dev` and its UI, killed runs."""
