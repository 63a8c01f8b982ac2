"""The load service: landed raw documents -> the Celonis-shaped tables, shared by the assets and the benchmark."""
