"""The gateway's exception tree. Imports nothing from the project.

::

    GatewayError
    ├── ConfigError              start-up only; message starts with the YAML path
    ├── CryptoError              vague on purpose: reasons go to the log, not to peers
    │   ├── KeyUnavailable       key file missing, unreadable, too open, or not SM2
    │   ├── BackendUnavailable   no SM2 implementation passed its self-test
    │   ├── EnvelopeInvalid      malformed, truncated, oversized, tampered, not for us
    │   └── ReceiptInvalid       receipt does not verify or does not match the send
    └── SpoolError               cannot persist: intake answers 503, readiness goes red

Every error carries a stable ``code`` (safe as a metric label and for operators);
``str(exc)`` is for logs only.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "CryptoError",
    "EnvelopeInvalid",
    "GatewayError",
    "KeyUnavailable",
    "ReceiptInvalid",
    "SpoolError",
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
