"""The asynchronous transport of the edit call, for triggers: httpx, same rules as the hook."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING, Any

from airflow_provider_cometapi.api.failures import Failure, failure_error, give_up_note
from airflow_provider_cometapi.api.request import EDIT_PATH
from airflow_provider_cometapi.api.response import error_from_response, request_id_from
from airflow_provider_cometapi.api.results import EditOutcome, WrittenImage
from airflow_provider_cometapi.api.retry import RetryPolicy
from airflow_provider_cometapi.api.settings import masked_settings
from airflow_provider_cometapi.api.sinks import DownloadCopy
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

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from airflow_provider_cometapi.api.request import EditRequest
    from airflow_provider_cometapi.api.settings import CometApiSettings
    from airflow_provider_cometapi.api.sinks import ImageSink

log = logging.getLogger(__name__)
USER_AGENT = user_agent("httpx")
POOL_SIZE = 16


class AsyncCometApiClient:
    """Sends checked edit requests with httpx; shares request, parsing and retry rules."""

    _sleep = staticmethod(asyncio.sleep)

    def __init__(self, settings: CometApiSettings, *, connections: int = POOL_SIZE) -> None:
        """:param connections: connections kept open between requests: as many as the requests
        a caller has in flight (fewer would close connections that the next requests open
        again). Requests take the pools in turn, each keeping at most ``POOL_SIZE`` open, since
        httpcore scans a pool's every connection on every request; a pool never makes a
        request wait for a connection (the caller bounds the requests in flight)."""
        import httpx

        self.settings = settings
        pools = -(-connections // POOL_SIZE)
        per_pool = -(-connections // pools)
        self._clients = [
            httpx.AsyncClient(
                timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
                verify=settings.verify,
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=per_pool),
                headers={"User-Agent": USER_AGENT},
            )
            for _ in range(pools)
        ]
        self._turns = itertools.cycle(self._clients)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.settings.base_url!r})"

    @classmethod
    async def connect(cls, conn_id: str, *, connections: int = POOL_SIZE) -> AsyncCometApiClient:
        """A client for the ``cometapi`` connection ``conn_id``; the key is masked at once."""
        from airflow.sdk.bases.hook import BaseHook

        conn = await BaseHook.aget_connection(conn_id)
        return cls(masked_settings(conn), connections=connections)

    async def aclose(self) -> None:
        """Close the connection pool."""
        for client in self._clients:
            await client.aclose()

    async def run_edit(
        self,
        request: EditRequest,
        sink: ImageSink,
        *,
        idempotency_key: str | None = None,
        label: str | None = None,
    ) -> EditOutcome:
        """
        Send ``request`` and stream every output into ``sink`` (writes run off the loop).

        :param request: from ``edit_request``.
        :param sink: opens one writer per output.
        :param idempotency_key: sent as ``Idempotency-Key`` on every attempt; one is made if unset.
        :param label: the item being edited (a file name), named in the log of every attempt.
        """
        response, retries = await self._send(
            "POST",
            self.settings.url(EDIT_PATH),
            authenticated=True,
            label=label,
            headers={"Idempotency-Key": idempotency_key or new_idempotency_key()},
            data=dict(request.fields),
            files=request.file_parts(),
        )
        request_id = request_id_from(response.headers)
        decoder = StreamedEditDecoder(sink.open_writer, request_id)
        await self._pump(response, decoder.feed)
        streamed = await asyncio.to_thread(decoder.finish)
        images: list[WrittenImage] = []
        next_slot = len(decoder.opened_slots)
        for index, item in enumerate(streamed.outputs):
            if isinstance(item, ImageUrl):
                images.append(
                    await self._download(item, index, next_slot, sink, request_id, label=label)
                )
                next_slot += 1
            else:
                images.append(item)
        return EditOutcome(streamed.created, streamed.usage, request_id, images, retries)

    async def _download(
        self,
        item: ImageUrl,
        index: int,
        slot: int,
        sink: ImageSink,
        request_id: str | None,
        *,
        label: str | None = None,
    ) -> WrittenImage:
        """Stream an output the server returned as a URL into ``sink``, checked as the hook does.

        :param label: the item being edited, named in the log of every attempt.
        """
        what = f"data[{index}].url"
        url = item.url
        for _ in range(MAX_REDIRECTS + 1):
            await asyncio.to_thread(
                check_download_url,
                url,
                self.settings,
                output_url=item.url,
                label=what,
                request_id=request_id,
            )
            response, _ = await self._send("GET", url, authenticated=False, label=label)
            target = redirect_target(url, response.status_code, response.headers)
            if target is None:
                break
            await response.aclose()
            url = target
        else:
            raise too_many_redirects(
                self.settings, output_url=item.url, label=what, request_id=request_id
            )
        copy = DownloadCopy(sink, slot, f"the download of {what}", request_id, MAX_DOWNLOAD_BYTES)
        await self._pump(response, copy.feed)
        await asyncio.to_thread(copy.finish)
        return WrittenImage(slot, copy.mime_type, copy.size, item.revised_prompt, item.url)

    async def _pump(self, response: httpx.Response, feed: Callable[[bytes], None]) -> None:
        """Feed a streamed body chunk by chunk, off the event loop; failures now are final."""
        import httpx

        try:
            async for chunk in response.aiter_bytes(CHUNK_BYTES):
                await asyncio.to_thread(feed, chunk)
        except httpx.TransportError as exc:
            failure = _classify(exc)
            if failure is Failure.DROPPED:  # the answer had begun: cut off, as requests names it
                failure = Failure.CUT_OFF
            raise failure_error(failure, f"{failure.value} while reading the answer") from exc
        finally:
            await response.aclose()

    async def _send(
        self, method: str, url: str, *, authenticated: bool, label: str | None, **kwargs: Any
    ) -> tuple[httpx.Response, int]:
        """Send with the retry rules; return a streaming 2xx response and the retries it took.

        :param label: the item the call is for, named in the log of every attempt.
        """
        import httpx

        settings = self.settings
        policy = RetryPolicy(
            max_retries=settings.max_retries,
            retry_on_read_timeout=settings.retry_on_read_timeout or method == "GET",
        )
        headers = dict(kwargs.pop("headers", {}))
        if authenticated:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        call = CallLog.of(method, url, settings.base_url, authenticated=authenticated, label=label)
        retries = 0
        while True:
            log.debug(*call.attempt(retries + 1, policy.max_retries + 1))
            client = next(self._turns)
            request = client.build_request(method, url, headers=headers, **kwargs)
            await request.aread()  # the multipart body in one piece: one write, not one a part
            try:
                response = await client.send(request, stream=True)
            except httpx.TransportError as exc:
                failure = _classify(exc)
                decision = policy.for_failure(retries, failure)
                if not decision.retry:
                    raise failure_error(failure, decision.reason, url) from exc
            else:
                if accepted(response.status_code, authenticated=authenticated):
                    return response, retries
                decision = policy.for_status(retries, response.status_code, response.headers)
                try:
                    body = await response.aread()
                except httpx.TransportError:  # the status says enough
                    body = b""
                await response.aclose()
                if not decision.retry:
                    raise error_from_response(
                        response.status_code,
                        body,
                        response.headers,
                        secrets=(settings.api_key,),
                        note=give_up_note(decision.wait_too_long, decision.reason, retries),
                    )
            log.info(*call.retry(decision.reason, decision.wait))
            await self._sleep(decision.wait)
            retries += 1


def _classify(exc: Exception) -> Failure:
    """Name an httpx failure in transport-neutral terms."""
    import httpx

    if isinstance(exc, httpx.ConnectTimeout):
        return Failure.CONNECT_TIMEOUT
    if isinstance(exc, httpx.ConnectError):
        return Failure.CONNECT
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
        return Failure.READ_TIMEOUT
    if isinstance(exc, httpx.RemoteProtocolError):
        return Failure.CUT_OFF
    return Failure.DROPPED
