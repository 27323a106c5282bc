"""The gateway's exception tree. Imports nothing from the project.

::

    GatewayError
    ├── ConfigError              start-up only; message starts with the YAML path
    ├── CryptoError              vague on purpose: reasons go to the log, not to peers
    │   ├── KeyUnavailable       key file missing, unreadable, too open, or not SM2
    │   ├── BackendUnavailable   no SM2 implementation passed its self-test
    │   ├── EnvelopeInvalid      malformed, truncated, oversized, tampered, not for us
    │   └── ReceiptInvalid       receipt does not verify or does not match the send
    ├── SpoolError               cannot persist: intake answers 503, readiness goes red
    │   ├── QuotaExceeded        over a spool quota: 503 + Retry-After (retry_after_s)
    │   └── LeaseLost            a leased item or envelope changed state meanwhile
    ├── TransportError(code)     an SFTP server or a drop folder cannot be reached
    │                            or refused an operation; retried with backoff
    └── DeliveryError(code)      code is bounded: safe as a metric label
        ├── TransientDeliveryError(retry_after)   back to the spool, retried later
        │   └── DeliveryTimeout  (also a TimeoutError)
        └── PermanentDeliveryError               dead-lettered with its reason
            └── ResealRequired   the receiver refused the envelope as too old

Every error carries a stable ``code`` (safe as a metric label and for operators);
``str(exc)`` is for logs only.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "CryptoError",
    "DeliveryError",
    "DeliveryTimeout",
    "EnvelopeInvalid",
    "GatewayError",
    "KeyUnavailable",
    "LeaseLost",
    "PermanentDeliveryError",
    "QuotaExceeded",
    "ReceiptInvalid",
    "ResealRequired",
    "SpoolError",
    "TransientDeliveryError",
    "TransportError",
]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    code = "E_GATEWAY"


class ConfigError(GatewayError):
    """The configuration cannot be used."""

    code = "E_CONFIG"


class CryptoError(GatewayError):
    """A cryptographic operation failed; the message names no secret."""

    code = "E_CRYPTO"


class KeyUnavailable(CryptoError):
    """A key could not be loaded or is unsafe to use."""

    code = "E_KEY"


class BackendUnavailable(CryptoError):
    """No usable SM2 implementation is present."""

    code = "E_SM2_BACKEND"


class EnvelopeInvalid(CryptoError):
    """The envelope is malformed, tampered with, or not addressed to us."""

    code = "E_ENVELOPE"

    def __init__(self, detail: str) -> None:
        # The detail is for the local log and audit; peers only ever see `code`.
        super().__init__(detail)
        self.detail = detail


class ReceiptInvalid(CryptoError):
    """The receipt does not verify or does not match the delivery."""

    code = "E_RECEIPT"


class SpoolError(GatewayError):
    """The spool cannot persist or read data."""

    code = "E_SPOOL"


class QuotaExceeded(SpoolError):
    """Accepting the input would exceed a spool quota; nothing was written."""

    code = "E_QUOTA"

    def __init__(self, detail: str, *, retry_after_s: float) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class LeaseLost(SpoolError):
    """The items or envelope changed state since the caller leased them."""

    code = "E_LEASE_LOST"


class TransportError(GatewayError):
    """A file transport (SFTP server, drop folder) failed; the session is reset."""

    code = "E_TRANSPORT"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code


class DeliveryError(GatewayError):
    """Sending an envelope to a destination failed."""

    code = "E_DELIVERY"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code


class TransientDeliveryError(DeliveryError):
    """Worth retrying later; ``retry_after`` is the receiver's hint in seconds."""

    def __init__(
        self, detail: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


class DeliveryTimeout(TransientDeliveryError, TimeoutError):
    """The receiver did not answer in time."""

    code = "E_TIMEOUT"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, code="E_TIMEOUT")


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: the envelope is dead-lettered with its reason."""


class ResealRequired(PermanentDeliveryError):
    """The receiver refused the envelope as too old; its records are sealed again."""
