"""The forwarder contract.

``send`` returns only once the receiver has answered with a receipt (its raw
bytes; the caller verifies it). It raises ``TransientDeliveryError`` (retry
later; ``retry_after`` if the receiver said when) or
``PermanentDeliveryError`` (dead-letter, or ``ResealRequired``) and nothing
else. Delivery is at-least-once: the envelope id travels as the
Idempotency-Key and the receiver deduplicates, so a resend is harmless.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Forwarder"]


class Forwarder(Protocol):
    name: str

    async def send(self, envelope: bytes, *, envelope_id: str) -> bytes: ...

    async def check(self) -> None: ...

    async def aclose(self) -> None: ...
