"""Input plug-ins: bytes in, canonical records out (pure, synchronous)."""
