"""Input plug-ins: bytes in, canonical records out (pure, synchronous)."""

from adapters import native

# Before any adapter module is imported: compiled, or from source if the build
# is stale (adapters/native.py).
native.install()
