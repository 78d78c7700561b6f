"""The FastAPI app: ``POST /v1/images/edits``, ``GET /v1/models`` and ``/_emulator/*`` helpers."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from airflow_provider_cometapi.emulator.drift import DRIFT_HEADER, parse_drift
from airflow_provider_cometapi.emulator.editing import compute_usage, edit_images
from airflow_provider_cometapi.emulator.errors import EmulatorError, invalid_request
from airflow_provider_cometapi.emulator.families import LISTED_MODELS, Family
from airflow_provider_cometapi.emulator.faults import HANG_SECONDS, FaultSpec, parse_fault
from airflow_provider_cometapi.emulator.records import request_record
from airflow_provider_cometapi.emulator.responses import error_response, fault_response
from airflow_provider_cometapi.emulator.validation import (
    IMAGE_FIELDS,
    EditRequest,
    FilePart,
    check_api_key,
    read_form,
    validate_edit,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from airflow_provider_cometapi.emulator.state import EmulatorState

FAULT_HEADER = "x-emulator-fault"
EDITS_PATH = "/v1/images/edits"


class RequestIdMiddleware:
    """Gives every request an id (``request.state.request_id``) sent back as ``x-request-id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


async def _wait_for_disconnect(request: Request, seconds: float, state: EmulatorState) -> bool:
    """Wait until the client leaves, the server closes or time is up; true if the client left."""
    with anyio.move_on_after(seconds):
        while not state.closing.is_set():
            if await request.is_disconnected():
                return True
            await anyio.sleep(0.1)
    return False


def _success_body(
    request: EditRequest, base_url: str, state: EmulatorState, drift: float
) -> tuple[bytes, dict[str, Any]]:
    """Do the edit and return the JSON body and its usage (blocking; run it in a thread)."""
    result = edit_images(request, drift)
    if request.family.answers_urls(request.response_format):
        names = [state.files.put(i, result.extension, result.media_type) for i in result.images]
        data = [{"url": f"{base_url}/_emulator/files/{name}"} for name in names]
    else:
        data = [{"b64_json": base64.b64encode(image).decode("ascii")} for image in result.images]
    usage = compute_usage(request, result.size)
    body: dict[str, Any] = {"created": int(time.time()), "usage": usage, "data": data}
    if request.family is Family.SEEDEDIT:
        body = {"model": request.model, **body}
    return json.dumps(body).encode(), usage


def create_app(state: EmulatorState) -> FastAPI:
    """Build the emulator app around shared state.

    :param state: settings and records shared with :class:`EmulatorServer`.
    """
    app = FastAPI(title="CometAPI emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(EmulatorError)
    async def on_emulator_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EmulatorError)
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(
            EmulatorError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
        )

    async def recorded(
        request: Request,
        fields: dict[str, str],
        files: list[FilePart],
        answer: Callable[[], Awaitable[Response]],
    ) -> Response:
        """Record the request, answer it (errors as OpenAI-style JSON) and record the status."""
        request_id = request.state.request_id
        described = [part.describe() for part in files]
        headers = request.headers.items()
        state.records.add(request_record(request_id, request.url.path, headers, fields, described))
        try:
            response = await answer()
        except EmulatorError as exc:
            response = error_response(exc)
        state.records.update(request_id, status=response.status_code)
        return response

    def pick_fault(request: Request, files: list[FilePart]) -> FaultSpec | None:
        """The request's fault: its header, else its image's file fault, else the server's.

        Only that one fault is counted for ``times=N``; once it is used up, or when there is
        none, the request may still draw a random fault.
        """
        header = request.headers.get(FAULT_HEADER, "").strip()
        spec = state.fault
        file_name: str | None = None
        file_faults = state.file_faults
        if header:
            try:
                spec = parse_fault(header)
            except ValueError as exc:
                raise invalid_request(
                    f"Bad {FAULT_HEADER} header: {exc}", FAULT_HEADER, "invalid_emulator_fault"
                ) from None
        elif file_faults:
            images = (part.filename for part in files if part.field in IMAGE_FIELDS)
            matched = file_faults.match(images)
            if matched is not None:
                file_name, spec = matched
        idempotency_key = request.headers.get("idempotency-key")
        if spec is not None and state.fault_counter.take(spec, idempotency_key, file_name):
            return spec
        return state.random_faults.draw() if state.random_faults is not None else None

    def pick_drift(request: Request) -> float:
        """The request's drift: its header, else the server's."""
        header = request.headers.get(DRIFT_HEADER, "").strip()
        if not header:
            return state.drift
        try:
            return parse_drift(header)
        except ValueError as exc:
            raise invalid_request(
                f"Bad {DRIFT_HEADER} header: {exc}", DRIFT_HEADER, "invalid_emulator_drift"
            ) from None

    async def lose_answer(request: Request, fault: FaultSpec, body: bytes | None) -> Response:
        """Answer with the fault instead of the edit (``body``, when it was done and billed)."""
        if fault.hang is not None:
            if await _wait_for_disconnect(request, fault.hang, state):
                return Response(status_code=499)
            raise EmulatorError(504, "Emulated hang: gave up waiting.", code="timeout")
        return fault_response(fault, state.connections, body)

    async def answer_edit(
        request: Request, fields: dict[str, str], files: list[FilePart]
    ) -> Response:
        request_id: str = request.state.request_id
        check_api_key(request.headers.get("authorization"), state.api_key)
        drift = pick_drift(request)
        idempotency_key = request.headers.get("idempotency-key")
        replay = state.replays.get(idempotency_key or "") if state.honour_idempotency else None
        if replay is not None:  # a gateway honouring Idempotency-Key: same answer, no new bill
            state.records.update(request_id, replayed=True)
            return Response(replay, media_type="application/json")
        fault = pick_fault(request, files)
        if fault is not None:
            state.records.update(request_id, fault=fault.text)
            if fault.latency:
                await asyncio.sleep(fault.latency)
            if fault.after_requests is not None:
                await _wait_for_requests(fault.after_requests, state)
            if fault.answers and not fault.billed:
                return await lose_answer(request, fault, None)
        edit = validate_edit(fields, files)
        if state.latency > 0:
            await asyncio.sleep(state.latency)
        base_url = str(request.base_url).rstrip("/")
        body, usage = await run_in_threadpool(_success_body, edit, base_url, state, drift)
        state.records.bill(request_id, model=edit.model, images=edit.n, usage=usage)
        if state.honour_idempotency and idempotency_key:
            state.replays[idempotency_key] = body
        if fault is not None and fault.billed:  # the work is done and paid; the answer is lost
            return await lose_answer(request, fault, body)
        return Response(body, media_type="application/json")

    @app.post(EDITS_PATH)
    async def images_edits(request: Request) -> Response:
        try:
            async with request.form() as form:
                fields, files = await read_form(form)
        except ClientDisconnect:
            return Response(status_code=499)
        except HTTPException as exc:
            problem = invalid_request(f"Bad multipart body: {exc.detail}", None, "invalid_body")

            async def refuse() -> Response:
                raise problem

            return await recorded(request, {}, [], refuse)
        state.enter()
        try:
            return await recorded(
                request, fields, files, lambda: answer_edit(request, fields, files)
            )
        finally:
            state.leave()

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        async def answer() -> Response:
            check_api_key(request.headers.get("authorization"), state.api_key)
            data = [
                {"id": model, "object": "model", "owned_by": "cometapi"} for model in LISTED_MODELS
            ]
            return JSONResponse({"object": "list", "data": data})

        return await recorded(request, {}, [], answer)

    @app.get("/_emulator/records")
    async def records() -> Response:
        return JSONResponse(
            {"requests": state.records.requests(), "billed": state.records.billed()}
        )

    @app.post("/_emulator/reset")
    async def reset() -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    @app.get("/_emulator/files/{name}")
    async def files(name: str) -> Response:
        stored = state.files.get(name)
        if stored is None:
            raise EmulatorError(404, f"No emulator file {name!r}.", code="not_found")
        data, media_type = stored
        return Response(data, media_type=media_type)

    return app


async def _wait_for_requests(count: int, state: EmulatorState) -> None:
    """Wait until ``count`` edit requests have arrived, the server closes, or a hang's time."""
    deadline = asyncio.get_running_loop().time() + HANG_SECONDS
    while state.received < count and not state.closing.is_set():
        if asyncio.get_running_loop().time() > deadline:
            raise EmulatorError(504, "Emulated wait for requests: gave up.", code="timeout")
        await asyncio.sleep(0.01)
