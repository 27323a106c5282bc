"""HTTP(S) forwarder: POST /v1/envelopes, a signed receipt comes back.

Failures are classified here, once: connection errors, timeouts, 408, 425,
429 and 5xx are transient; ``E_ENVELOPE_EXPIRED`` asks for a re-seal; any
other 4xx is permanent. A few quick retries (tenacity, exponential backoff
with jitter) absorb blips; longer waits go back to the spool.
"""

from __future__ import annotations

import asyncio
import io
import json
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from config.models import HttpDestination
from gateway.bodies import TooLarge, read_limited
from gateway.errors import (
    DeliveryTimeout,
    PermanentDeliveryError,
    ResealRequired,
    TransientDeliveryError,
)

__all__ = ["ENVELOPE_TYPE", "RECEIPT_TYPE", "HttpForwarder"]

ENVELOPE_TYPE = "application/vnd.smenv.envelope"
RECEIPT_TYPE = "application/vnd.smenv.receipt+json"
MAX_RECEIPT_BYTES = 64 * 1024 * 1024
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def retry_after_seconds(
    value: str | None, *, now: datetime | None = None
) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    v = value.strip()
    if v.isdigit():
        return float(v)
    try:
        when = parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def ssl_context(
    cfg: HttpDestination, resolve: Callable[[str], str]
) -> ssl.SSLContext | None:
    if not cfg.url.startswith("https://"):
        return None
    ctx = ssl.create_default_context(
        cafile=resolve(cfg.tls.ca_file) if cfg.tls.ca_file else None
    )
    if cfg.tls.cert_file:
        ctx.load_cert_chain(
            resolve(cfg.tls.cert_file),
            resolve(cfg.tls.key_file) if cfg.tls.key_file else None,
        )
    return ctx


class HttpForwarder:
    """One destination's HTTP client (its own connection pool)."""

    def __init__(self, cfg: HttpDestination, *, resolve: Callable[[str], str]) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self._ssl = ssl_context(cfg, resolve)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._cfg.max_in_flight, ssl=self._ssl if self._ssl else False
                ),
                timeout=aiohttp.ClientTimeout(
                    total=self._cfg.timeout_s, sock_connect=self._cfg.connect_timeout_s
                ),
                raise_for_status=False,
            )
        return self._session

    async def send(self, envelope: bytes, *, envelope_id: str) -> bytes:
        retry = self._cfg.retry
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(retry.quick_attempts),
            wait=wait_exponential_jitter(
                multiplier=retry.initial_s, max=retry.max_quick_s
            ),
            retry=retry_if_exception_type(TransientDeliveryError),
            reraise=True,
        ):
            with attempt:
                return await self._send_once(envelope, envelope_id)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _send_once(self, envelope: bytes, envelope_id: str) -> bytes:
        headers = {
            "Content-Type": ENVELOPE_TYPE,
            "Idempotency-Key": envelope_id,
            "Accept": RECEIPT_TYPE,
        }
        try:
            async with self._client().post(
                self._cfg.url, data=io.BytesIO(envelope), headers=headers
            ) as resp:
                try:
                    body = await read_limited(resp.content, MAX_RECEIPT_BYTES)
                except TooLarge as exc:
                    raise TransientDeliveryError(
                        f"{self.name}: answer too large", code="E_RECEIPT"
                    ) from exc
                return self._classify(resp.status, resp.headers, body)
        except TimeoutError as exc:
            raise DeliveryTimeout(f"{self.name}: {self._cfg.url} timed out") from exc
        except aiohttp.ClientError as exc:
            raise TransientDeliveryError(
                f"{self.name}: {self._cfg.url}: {type(exc).__name__}: {exc}",
                code="E_CONNECT",
            ) from exc

    def _classify(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        url = self._cfg.url
        retry_after = retry_after_seconds(headers.get("Retry-After"))
        if status == 200:
            return body
        code = _error_code(body)
        if status in _TRANSIENT_STATUS:
            raise TransientDeliveryError(
                f"{self.name}: {url} answered {status} {code}",
                code=f"HTTP_{status}",
                retry_after=retry_after,
            )
        if code == "E_ENVELOPE_EXPIRED":
            raise ResealRequired(
                f"{self.name}: {url}: envelope too old, re-seal", code=code
            )
        raise PermanentDeliveryError(
            f"{self.name}: {url} answered {status} {code}", code=f"HTTP_{status}"
        )

    async def check(self) -> None:
        """Do what send does short of sending: reach the server (Vector's advice)."""
        try:
            async with self._client().head(self._cfg.url) as resp:
                await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientDeliveryError(
                f"{self.name}: unreachable", code="E_CONNECT"
            ) from exc

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            # Let the connector finish closing its transports.
            await asyncio.sleep(0)


def _error_code(body: bytes) -> str:
    try:
        obj = json.loads(body[:65536])
    except ValueError:
        return ""
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        code = obj["error"].get("code")
        if isinstance(code, str) and code.isascii() and len(code) <= 64:
            return code
    return ""
