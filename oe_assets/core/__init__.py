"""What every layer shares: how OE writes time."""
