"""The `oe_raw` layer: what the OE API returned, kept verbatim."""
