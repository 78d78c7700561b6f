"""Connection settings: turn an Airflow ``cometapi`` connection into validated client settings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_cometapi.api.pricing import Pricing, load_pricing
from airflow_provider_cometapi.exceptions import CometAPIAuthError, CometAPIValidationError

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEFAULT_BASE_URL = "https://api.cometapi.com"
DEFAULT_MODEL = "gpt-image-2"
DEFAULT_READ_TIMEOUT = 600.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 2
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_FORM_PREFIX = "extra__cometapi__"


@dataclass(frozen=True)
class CometApiSettings:
    """Everything the client needs from the connection. The key never shows in ``repr``."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    read_timeout: float = DEFAULT_READ_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    default_model: str = DEFAULT_MODEL
    verify: bool | str = True
    retry_on_read_timeout: bool = False
    allow_private_urls: bool = False
    pricing: Pricing | None = None
    """The user's prices (connection extra ``pricing``, else ``[cometapi] pricing``), if any."""

    def url(self, path: str) -> str:
        """Absolute URL of an API path such as ``/v1/images/edits``."""
        return self.base_url + path


def normalize_base_url(host: str | None, port: int | None = None) -> str:
    """``api.cometapi.com/v1/`` -> ``https://api.cometapi.com``; blank -> the default.

    :param port: the connection's port, added unless ``host`` names one already.
    """
    host = (host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        host = "https://" + host
    scheme = host.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise CometAPIValidationError(
            f"Connection host {host!r} has scheme {scheme!r}; use an http:// or https:// base URL.",
            param="host",
        )
    host = host.rstrip("/")
    if host.endswith("/v1"):
        host = host[: -len("/v1")]
    parts = urlsplit(host)
    try:
        has_port = parts.port is not None
    except ValueError:
        raise CometAPIValidationError(
            f"Connection host {host!r} has an invalid port; use a number from 1 to 65535.",
            param="host",
        ) from None
    if port and not has_port:
        host = parts._replace(netloc=f"{parts.netloc}:{port}").geturl()
    return host


def masked_settings(conn: Connection) -> CometApiSettings:
    """``settings_from_connection``, with the key (raw and stripped) masked in Airflow's logs."""
    from airflow.sdk.log import mask_secret

    if conn.password:
        mask_secret(conn.password)
    settings = settings_from_connection(conn)
    mask_secret(settings.api_key)
    return settings


def settings_from_connection(conn: Connection) -> CometApiSettings:
    """Read and check a ``cometapi`` connection; raise a typed error naming the bad field."""
    api_key = (conn.password or "").strip()
    if not api_key:
        raise CometAPIAuthError(
            f"Connection {conn.conn_id!r} has no API key: put your CometAPI key in its "
            "'API Key' (password) field."
        )
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in api_key):
        raise CometAPIAuthError(
            f"Connection {conn.conn_id!r} has an API key with spaces or control characters: "
            "paste the key again without them."
        )
    extra = _extra_dict(conn)
    return CometApiSettings(
        api_key=api_key,
        base_url=normalize_base_url(conn.host, conn.port),
        read_timeout=_positive_float(extra, "timeout", DEFAULT_READ_TIMEOUT),
        connect_timeout=_positive_float(extra, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        max_retries=_non_negative_int(extra, "max_retries", DEFAULT_MAX_RETRIES),
        default_model=str(extra.get("default_model") or DEFAULT_MODEL),
        verify=_verify(extra),
        retry_on_read_timeout=_boolean(extra, "retry_on_read_timeout", False),
        allow_private_urls=_boolean(extra, "allow_private_urls", False),
        pricing=load_pricing(extra),
    )


def _extra_dict(conn: Connection) -> dict[str, Any]:
    """The extras, accepting the form's prefixed names (``extra__cometapi__timeout``) too."""
    extra = conn.extra_dejson if conn.extra else {}
    return {key.removeprefix(_FORM_PREFIX): value for key, value in extra.items()}


def _bad_extra(name: str, value: Any, expected: str) -> CometAPIValidationError:
    return CometAPIValidationError(
        f"Connection extra {name!r} is {value!r}; set it to {expected}.", param=name
    )


def _positive_float(extra: dict[str, Any], name: str, default: float) -> float:
    value = extra.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _bad_extra(name, value, "a number of seconds greater than 0") from None
    if not number > 0 or number == float("inf"):
        raise _bad_extra(name, value, "a number of seconds greater than 0")
    return number


def _non_negative_int(extra: dict[str, Any], name: str, default: int) -> int:
    """A whole number, 0 or more; ``2``, ``2.0`` and ``"2.0"`` all read as 2."""
    value = extra.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(str(value))
    except ValueError:
        number = math.nan
    if isinstance(value, bool) or not (number.is_integer() and number >= 0):
        raise _bad_extra(name, value, "a whole number, 0 or more")
    return int(number)


def _boolean(extra: dict[str, Any], name: str, default: bool) -> bool:
    value = extra.get(name)
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad_extra(name, value, "true or false")


def _verify(extra: dict[str, Any]) -> bool | str:
    """``verify`` is a boolean, or the path of a CA bundle."""
    value = extra.get("verify")
    if isinstance(value, str) and value.strip().lower() not in _TRUE | _FALSE | {""}:
        return value
    return _boolean(extra, "verify", True)
