"""Configuration: the OE_* variables, read in one place, and the secrets among them."""
