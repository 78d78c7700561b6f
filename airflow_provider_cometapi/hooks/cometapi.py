"""CometApiHook: the ``cometapi`` connection and the ``POST /v1/images/edits`` call."""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.hook import BaseHook

from airflow_provider_cometapi.api.compositing import checked_image
from airflow_provider_cometapi.api.failures import Failure, failure_error, give_up_note
from airflow_provider_cometapi.api.models import service_default_notes
from airflow_provider_cometapi.api.request import (
    EDIT_PATH,
    MODELS_PATH,
    EditParams,
    EditRequest,
    check_mask_options,
    edit_request,
)
from airflow_provider_cometapi.api.response import error_from_response, request_id_from
from airflow_provider_cometapi.api.results import (
    EditedImage,
    EditOutcome,
    ImageEditResult,
    WrittenImage,
)
from airflow_provider_cometapi.api.retry import RetryPolicy
from airflow_provider_cometapi.api.settings import CometApiSettings, masked_settings
from airflow_provider_cometapi.api.sinks import DownloadCopy, ImageSink, MemorySink
from airflow_provider_cometapi.api.streaming import ImageUrl, StreamedEditDecoder
from airflow_provider_cometapi.api.urls import (
    MAX_REDIRECTS,
    accepted,
    check_download_url,
    redirect_target,
    too_many_redirects,
)
from airflow_provider_cometapi.api.wire import (
    CHUNK_BYTES,
    MAX_DOWNLOAD_BYTES,
    CallLog,
    new_idempotency_key,
    user_agent,
)
from airflow_provider_cometapi.exceptions import CometAPIError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import requests

    from airflow_provider_cometapi.api.images import ImageInput

USER_AGENT = user_agent("requests")


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
        return masked_settings(self.get_connection(self.cometapi_conn_id))

    @cached_property
    def session(self) -> requests.Session:
        """One pooled HTTP session, reused by every call of this hook."""
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        return session

    def get_conn(self) -> requests.Session:
        """The hook's pooled ``requests.Session`` (``session``), the one its edits go through."""
        return self.session

    def fork(self) -> CometApiHook:
        """A hook on the same connection, sharing the checked settings, with its own session."""
        twin = type(self)(cometapi_conn_id=self.cometapi_conn_id)
        twin.__dict__["settings"] = self.settings
        return twin

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
            response, _ = self._send("GET", self.settings.url(MODELS_PATH), authenticated=True)
            models = response.json().get("data", [])
        except CometAPIError as exc:
            return False, f"GET /v1/models failed: {exc}"
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
        preserve_unmasked: bool = False,
        feather: int = 0,
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
        :param n: number of outputs (1-10 for the GPT image models).
        :param quality: for the GPT image models ``high``, ``medium``, ``low``, ``auto`` or
            ``standard``.
        :param size: as the model's rules allow (README, "Models"), e.g. ``auto``,
            ``1024x1024``, or ``adaptive`` for SeedEdit.
        :param output_format: ``png``, ``jpeg`` or ``webp``.
        :param response_format: ``b64_json`` or ``url`` (URLs are downloaded for you).
        :param extra_fields: further documented form fields, sent unchanged.
        :param preserve_unmasked: with a mask, paste every pixel it keeps (alpha 255) back
            from the first image, so that only the masked area changes (see ``edit``).
        :param feather: pixels over which a composite's seam is softened, inside the edit.
        :param timeout: read timeout in seconds for this call.
        :param idempotency_key: sent as ``Idempotency-Key`` on every attempt; one is made if unset.
        """
        params = EditParams(
            prompt=prompt,
            model=model or self.settings.default_model,
            n=n,
            quality=quality,
            size=size,
            output_format=output_format,
            response_format=response_format,
            extra_fields=extra_fields,
        )
        request = edit_request(image, params, mask=mask)
        for note in service_default_notes(params):
            self.log.info("%s", note)
        return self.edit(
            request,
            preserve_unmasked=preserve_unmasked,
            feather=feather,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )

    def edit(
        self,
        request: EditRequest,
        *,
        preserve_unmasked: bool = False,
        feather: int = 0,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> ImageEditResult:
        """
        Send a checked request (from ``edit_request``) and return the outputs in memory.

        With a mask, each output's ``drift`` says what the model changed where the mask keeps
        pixels (``api/compositing.py``).

        :param request: the checked request.
        :param preserve_unmasked: with a mask, composite each output over the first image so
            that every pixel the mask keeps is exactly the source's (a JPEG output's composite
            comes back as PNG, which keeps pixels exact).
        :param feather: pixels over which the composite's seam is softened, inside the edit.
        :param timeout: read timeout in seconds for this call.
        :param idempotency_key: sent as ``Idempotency-Key`` on every attempt.
        """
        output_format = dict(request.fields).get("output_format")
        check_mask_options(preserve_unmasked, feather, None, output_format=output_format)
        sink = MemorySink()
        outcome = self.run_edit(request, sink, timeout=timeout, idempotency_key=idempotency_key)
        images = [
            EditedImage(
                data=sink.data(image.slot),
                mime_type=image.mime_type,
                revised_prompt=image.revised_prompt,
                url=image.url,
            )
            for image in outcome.images
        ]
        if request.mask is not None:
            images = [self._checked(image, request, preserve_unmasked, feather) for image in images]
        return ImageEditResult(
            created=outcome.created,
            images=images,
            usage=outcome.usage,
            request_id=outcome.request_id,
            retries=outcome.retries,
        )

    def _checked(
        self, image: EditedImage, request: EditRequest, preserve_unmasked: bool, feather: int
    ) -> EditedImage:
        """A paid output checked through the request's mask (composited when asked); as it
        came, with a warning, when it cannot be decoded: it was paid for."""
        assert request.mask is not None
        try:
            checked = checked_image(
                image,
                request.images[0].data,
                request.mask.data,
                composite=preserve_unmasked,
                feather=feather,
            )
        except Exception as exc:  # Pillow raises many types for a corrupt image
            self.log.warning(
                "An edited image could not be decoded for the mask check (%s); returned as it came",
                type(exc).__name__,
            )
            return image
        if checked.check is not None and checked.check.resized_from is not None:
            self.log.warning(
                "An edited image is %dx%d, not the source's size: resized to the source's "
                "before the mask check",
                *checked.check.resized_from,
            )
        return checked

    def run_edit(
        self,
        request: EditRequest,
        sink: ImageSink,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        label: str | None = None,
    ) -> EditOutcome:
        """
        Send a checked request and stream every output image into ``sink``.

        The response is decoded chunk by chunk, so memory stays flat however large the images.

        :param request: from ``edit_request``.
        :param sink: opens one writer per output.
        :param timeout: read timeout in seconds for this call.
        :param idempotency_key: sent as ``Idempotency-Key`` on every attempt; one is made if unset.
        :param label: the item being edited (a file name), named in the log of every attempt.
        """
        response, retries = self._send(
            "POST",
            self.settings.url(EDIT_PATH),
            authenticated=True,
            timeout=timeout,
            label=label,
            stream=True,
            headers={"Idempotency-Key": idempotency_key or new_idempotency_key()},
            data=request.fields,
            files=request.file_parts(),
        )
        request_id = request_id_from(response.headers)
        decoder = StreamedEditDecoder(sink.open_writer, request_id)
        with response:
            self._pump(response, decoder.feed)
        streamed = decoder.finish()
        images: list[WrittenImage] = []
        next_slot = len(decoder.opened_slots)
        for index, item in enumerate(streamed.outputs):
            if isinstance(item, ImageUrl):
                images.append(
                    self._download(
                        item, index, next_slot, sink, request_id, timeout=timeout, label=label
                    )
                )
                next_slot += 1
            else:
                images.append(item)
        self.log.debug(
            "CometAPI edit done: %d image(s), %s total tokens, request id %s",
            len(images),
            streamed.usage.get("total_tokens", "unknown"),
            request_id,
        )
        return EditOutcome(streamed.created, streamed.usage, request_id, images, retries)

    def _download(
        self,
        item: ImageUrl,
        index: int,
        slot: int,
        sink: ImageSink,
        request_id: str | None,
        *,
        timeout: float | None = None,
        label: str | None = None,
    ) -> WrittenImage:
        """Stream an output the server returned as a URL into ``sink``, capped at 64 MiB.

        Every hop of a redirect is checked by ``check_download_url``, and none carries the key.

        :param timeout: read timeout in seconds, as for the edit call.
        :param label: the item being edited, named in the log of every attempt.
        """
        what = f"data[{index}].url"
        url = item.url
        for _ in range(MAX_REDIRECTS + 1):
            check_download_url(
                url, self.settings, output_url=item.url, label=what, request_id=request_id
            )
            response, _ = self._send(
                "GET", url, authenticated=False, timeout=timeout, label=label, stream=True
            )
            target = redirect_target(url, response.status_code, response.headers)
            if target is None:
                break
            response.close()
            url = target
        else:
            raise too_many_redirects(
                self.settings, output_url=item.url, label=what, request_id=request_id
            )
        copy = DownloadCopy(sink, slot, f"the download of {what}", request_id, MAX_DOWNLOAD_BYTES)
        with response:
            self._pump(response, copy.feed)
        copy.finish()
        return WrittenImage(slot, copy.mime_type, copy.size, item.revised_prompt, item.url)

    def _pump(self, response: requests.Response, feed: Callable[[bytes], None]) -> None:
        """Feed a streamed body to ``feed``; a failure now is final (the edit is billed)."""
        import requests

        try:
            for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
                feed(chunk)
        except requests.RequestException as exc:
            failure = _classify(exc)
            raise failure_error(failure, f"{failure.value} while reading the answer") from exc

    def _send(
        self,
        method: str,
        url: str,
        *,
        authenticated: bool,
        timeout: float | None = None,
        label: str | None = None,
        **kwargs: Any,
    ) -> tuple[requests.Response, int]:
        """Send with the retry rules; return a 2xx response and the retries it took.

        :param label: the item the call is for, named in the log of every attempt.
        """
        import requests

        settings = self.settings
        policy = RetryPolicy(
            max_retries=settings.max_retries,
            retry_on_read_timeout=settings.retry_on_read_timeout or method == "GET",
        )
        auth = _BearerAuth(settings.api_key) if authenticated else None
        call = CallLog.of(method, url, settings.base_url, authenticated=authenticated, label=label)
        retries = 0
        while True:
            self.log.debug(*call.attempt(retries + 1, policy.max_retries + 1))
            try:
                response = self.session.request(
                    method,
                    url,
                    auth=auth,
                    timeout=(settings.connect_timeout, timeout or settings.read_timeout),
                    # per request: a session's verify loses to REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
                    verify=settings.verify,
                    allow_redirects=False,  # downloads follow redirects hop by hop, checked
                    **kwargs,
                )
            except requests.RequestException as exc:
                failure = _classify(exc)
                decision = policy.for_failure(retries, failure)
                if not decision.retry:
                    raise failure_error(failure, decision.reason, url) from exc
            else:
                if accepted(response.status_code, authenticated=authenticated):
                    return response, retries
                decision = policy.for_status(retries, response.status_code, response.headers)
                if not decision.retry:
                    with response:
                        body = _error_body(response)
                    raise error_from_response(
                        response.status_code,
                        body,
                        response.headers,
                        secrets=(settings.api_key,),
                        note=give_up_note(decision.wait_too_long, decision.reason, retries),
                    )
                response.close()
            self.log.info(*call.retry(decision.reason, decision.wait))
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


def _classify(exc: Exception) -> Failure:
    """Name a ``requests`` failure in transport-neutral terms."""
    import requests
    from urllib3.exceptions import NewConnectionError, ReadTimeoutError

    if isinstance(exc, requests.ConnectTimeout):
        return Failure.CONNECT_TIMEOUT
    cause = exc.args[0] if exc.args else None
    # Mid-body, requests wraps urllib3's read timeout in a plain ConnectionError.
    if isinstance(exc, requests.ReadTimeout) or isinstance(cause, ReadTimeoutError):
        return Failure.READ_TIMEOUT
    if isinstance(cause, NewConnectionError) or isinstance(
        getattr(cause, "reason", None), NewConnectionError
    ):
        return Failure.CONNECT
    if isinstance(
        exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)
    ):
        return Failure.CUT_OFF
    return Failure.DROPPED


def _error_body(response: requests.Response) -> bytes:
    """An error answer's body; empty if it cannot be read (the status says enough)."""
    import requests

    try:
        return response.content
    except requests.RequestException:
        return b""
