"""CometApiHook: the ``cometapi`` connection and the ``POST /v1/images/edits`` call."""

from __future__ import annotations

import time
import uuid
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.hook import BaseHook

from airflow_provider_cometapi import __version__
from airflow_provider_cometapi.api.request import EDIT_PATH, MODELS_PATH, build_edit_request
from airflow_provider_cometapi.api.response import (
    ImageUrl,
    decode_image_bytes,
    error_from_response,
    parse_edit_body,
    request_id_from,
)
from airflow_provider_cometapi.api.results import EditedImage, ImageEditResult
from airflow_provider_cometapi.api.retry import RetryDecision, RetryPolicy
from airflow_provider_cometapi.api.settings import CometApiSettings, settings_from_connection
from airflow_provider_cometapi.exceptions import (
    CometAPIBadResponseError,
    CometAPIConnectionError,
    CometAPIError,
    CometAPITimeoutError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import requests

    from airflow_provider_cometapi.api.images import ImageInput

MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
USER_AGENT = f"airflow-provider-cometapi/{__version__}"


class CometApiHook(BaseHook):
    """
    Talk to CometAPI's image-edit endpoint through a ``cometapi`` connection.

    :param cometapi_conn_id: the connection holding the API key (password), the base URL
        (host) and the extras ``timeout``, ``connect_timeout``, ``max_retries``,
        ``default_model``, ``verify`` and ``retry_on_read_timeout``.
    """

    conn_name_attr = "cometapi_conn_id"
    default_conn_name = "cometapi_default"
    conn_type = "cometapi"
    hook_name = "CometAPI"
    _sleep = staticmethod(time.sleep)

    def __init__(self, cometapi_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cometapi_conn_id = cometapi_conn_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cometapi_conn_id={self.cometapi_conn_id!r})"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Show only the fields this connection uses, with their real names."""
        from airflow_provider_cometapi.connection_form import UI_FIELD_BEHAVIOUR

        return UI_FIELD_BEHAVIOUR

    @cached_property
    def settings(self) -> CometApiSettings:
        """The checked connection settings; the key is masked in logs as soon as it is read."""
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.cometapi_conn_id)
        if conn.password:
            mask_secret(conn.password)
        settings = settings_from_connection(conn)
        mask_secret(settings.api_key)
        return settings

    @cached_property
    def session(self) -> requests.Session:
        """One pooled HTTP session, reused by every call of this hook."""
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.verify = self.settings.verify
        session.headers["User-Agent"] = USER_AGENT
        return session

    def close(self) -> None:
        """Close the HTTP session and its pooled connections."""
        session = self.__dict__.pop("session", None)
        if session is not None:
            session.close()

    def __enter__(self) -> CometApiHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        """Check the key and base URL with ``GET /v1/models``."""
        try:
            response = self._send("GET", self.settings.url(MODELS_PATH), authenticated=True)
            models = response.json().get("data", [])
        except CometAPIError as exc:
            return False, str(exc)
        except ValueError:
            return False, "CometAPI answered GET /v1/models with something that is not JSON."
        return True, f"Connected to {self.settings.base_url}: {len(models)} models available."

    def edit_image(
        self,
        image: ImageInput | Sequence[ImageInput],
        prompt: str,
        *,
        mask: ImageInput | None = None,
        model: str | None = None,
        n: int | None = None,
        quality: str | None = None,
        size: str | None = None,
        output_format: str | None = None,
        response_format: str | None = None,
        extra_fields: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> ImageEditResult:
        """
        Edit one image (or up to 16) with a prompt and return the decoded results.

        Every argument and file is checked before anything is sent.

        :param image: bytes, a ``(filename, bytes)`` pair or a local path, or a list of 1-16.
        :param prompt: the edit instruction.
        :param mask: optional PNG with alpha 0 where the image should change.
        :param model: defaults to the connection's ``default_model``.
        :param n: number of outputs, 1-10.
        :param quality: ``high``, ``medium``, ``low``, ``auto`` or ``standard``.
        :param size: ``auto`` or ``WIDTHxHEIGHT``.
        :param output_format: ``png``, ``jpeg`` or ``webp``.
        :param response_format: ``b64_json`` or ``url`` (URLs are downloaded for you).
        :param extra_fields: further documented form fields, sent unchanged.
        :param timeout: read timeout in seconds for this call.
        :param idempotency_key: sent as ``Idempotency-Key`` on every attempt; one is made if unset.
        """
        request = build_edit_request(
            image,
            prompt,
            model=model or self.settings.default_model,
            mask=mask,
            n=n,
            quality=quality,
            size=size,
            output_format=output_format,
            response_format=response_format,
            extra_fields=extra_fields,
        )
        key = idempotency_key or f"airflow-cometapi-{uuid.uuid4().hex}"
        response = self._send(
            "POST",
            self.settings.url(EDIT_PATH),
            authenticated=True,
            timeout=timeout,
            headers={"Idempotency-Key": key},
            data=request.fields,
            files=request.file_parts(),
        )
        request_id = request_id_from(response.headers)
        parsed = parse_edit_body(response.content, request_id)
        images = [
            item if isinstance(item, EditedImage) else self._download(item, index, request_id)
            for index, item in enumerate(parsed.outputs)
        ]
        result = ImageEditResult(
            created=parsed.created, images=images, usage=parsed.usage, request_id=request_id
        )
        self.log.info(
            "CometAPI edit done: %d image(s), %s total tokens, request id %s",
            len(images),
            parsed.usage.get("total_tokens", "unknown"),
            request_id,
        )
        return result

    def _download(self, item: ImageUrl, index: int, request_id: str | None) -> EditedImage:
        """Fetch an output the server returned as a URL, capped at 64 MiB."""
        if not item.url.lower().startswith(("http://", "https://")):
            raise CometAPIBadResponseError(
                f"CometAPI returned data[{index}].url with a scheme other than http(s); "
                "request response_format='b64_json' instead.",
                request_id=request_id,
            )
        response = self._send("GET", item.url, authenticated=False, stream=True)
        with response:
            chunks, total = [], 0
            for chunk in response.iter_content(chunk_size=1 << 16):
                total += len(chunk)
                if total > MAX_DOWNLOAD_BYTES:
                    raise CometAPIBadResponseError(
                        f"data[{index}].url is larger than {MAX_DOWNLOAD_BYTES >> 20} MiB; "
                        "refusing to download it.",
                        request_id=request_id,
                    )
                chunks.append(chunk)
        data = b"".join(chunks)
        mime_type = decode_image_bytes(data, f"the download of data[{index}].url", request_id)
        return EditedImage(
            data=data, mime_type=mime_type, revised_prompt=item.revised_prompt, url=item.url
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        authenticated: bool,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send with the retry rules; return a 2xx response or raise a typed error."""
        import requests

        settings = self.settings
        policy = RetryPolicy(
            max_retries=settings.max_retries,
            retry_on_read_timeout=settings.retry_on_read_timeout or method == "GET",
        )
        auth = _BearerAuth(settings.api_key) if authenticated else None
        path = url[len(settings.base_url) :] if url.startswith(settings.base_url) else "download"
        retries = 0
        while True:
            self.log.info(
                "CometAPI %s %s: attempt %d of %d",
                method,
                path,
                retries + 1,
                policy.max_retries + 1,
            )
            try:
                response = self.session.request(
                    method,
                    url,
                    auth=auth,
                    timeout=(settings.connect_timeout, timeout or settings.read_timeout),
                    allow_redirects=not authenticated,
                    **kwargs,
                )
            except requests.RequestException as exc:
                what = _describe_failure(exc)
                decision = policy.for_failure(retries, connect=_never_sent(exc), what=what)
                if not decision.retry:
                    raise _transport_error(exc, decision) from exc
            else:
                if response.status_code < 300:
                    return response
                decision = policy.for_status(retries, response.status_code, response.headers)
                if not decision.retry:
                    with response:
                        body = response.content
                    raise error_from_response(
                        response.status_code,
                        body,
                        response.headers,
                        secrets=(settings.api_key,),
                        note=_give_up_note(decision, retries),
                    )
                response.close()
            self.log.info(
                "CometAPI %s %s: %s; retrying in %.2f s",
                method,
                path,
                decision.reason,
                decision.wait,
            )
            self._sleep(decision.wait)
            retries += 1


class _BearerAuth:
    """Adds ``Authorization: Bearer <key>`` per request; never shows the key."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


def _never_sent(exc: Exception) -> bool:
    """True when the connection was never made, so the server cannot have done the edit."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(cause, NewConnectionError) or isinstance(
        getattr(cause, "reason", None), NewConnectionError
    )


def _describe_failure(exc: Exception) -> str:
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.ReadTimeout):
        return "read timeout"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "answer cut off mid-body"
    if _never_sent(exc):
        return "connection refused or unreachable"
    return "connection dropped"


def _transport_error(exc: Exception, decision: RetryDecision) -> CometAPIError:
    import requests

    if isinstance(exc, requests.Timeout):
        return CometAPITimeoutError(
            f"CometAPI did not answer in time ({decision.reason}). Raise the connection's "
            "'timeout' extra; set 'retry_on_read_timeout' to retry (a retried edit may be "
            "billed twice)."
        )
    cut_off = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
    if isinstance(exc, cut_off):
        return CometAPIBadResponseError(
            f"CometAPI's answer was cut off ({decision.reason}). Retry the task later."
        )
    return CometAPIConnectionError(
        f"Could not reach CometAPI ({decision.reason}): check the connection's base URL and "
        "the network."
    )


def _give_up_note(decision: RetryDecision, retries: int) -> str:
    if decision.wait_too_long:
        return f"Not retried: {decision.reason}"
    return f"Gave up after {retries} retries" if retries else ""
