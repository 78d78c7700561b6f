"""Output URLs are fetched over http(s) only, from public addresses or the API's own origin,
each redirect re-checked; a refusal names the paid output's URL."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

import pytest

from airflow_provider_cometapi.api.request import EditParams, edit_request
from airflow_provider_cometapi.api.settings import CometApiSettings
from airflow_provider_cometapi.api.sinks import MemorySink
from airflow_provider_cometapi.api.urls import check_download_url, redirect_target, same_origin
from airflow_provider_cometapi.exceptions import CometAPIBadResponseError
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from airflow_provider_cometapi.hooks.cometapi_async import AsyncCometApiClient
from tests.httpserver import QuietHandler, serve
from tests.imaging import decode, image_bytes
from tests.settings import PLANTED_KEY

PUBLIC_API = CometApiSettings(api_key=PLANTED_KEY)
TRANSPORTS = ("requests", "httpx")

REFUSED = [
    "http://127.0.0.1:8080/x.png",
    "http://localhost/x.png",
    "http://10.1.2.3/x.png",
    "http://172.16.0.9/x.png",
    "http://192.168.1.1/x.png",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/x.png",
    "http://[fe80::1]/x.png",
    "http://0.0.0.0/x.png",
    "http://224.0.0.1/x.png",
    "ftp://8.8.8.8/x.png",
    "file:///etc/passwd",
    "http:///no-host",
]


def check(url, settings=PUBLIC_API):
    check_download_url(url, settings, output_url=url, label="data[0].url")


@pytest.mark.parametrize("url", REFUSED)
def test_non_public_or_non_http_urls_are_refused(url):
    with pytest.raises(CometAPIBadResponseError, match=r"data\[0\]\.url") as raised:
        check(url)
    assert f"The edit was paid for: its image can be fetched from {url}" in str(raised.value)


def test_public_addresses_pass_and_the_extra_allows_private_ones():
    check("https://8.8.8.8/x.png")
    check("http://127.0.0.1:1/x.png", CometApiSettings(api_key="k", allow_private_urls=True))


SAME_ORIGIN = [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/_emulator/files/a.png"),
    ("HTTP://LocalHost", "http://localhost:80/x.png"),
    ("https://10.0.0.5", "HTTPS://10.0.0.5:443/files/a.png?sig=1"),
    ("http://[::1]:9000", "http://[::1]:9000/x.png"),
]
OTHER_ORIGIN = [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8081/x.png"),  # port
    ("https://127.0.0.1:8080", "http://127.0.0.1:8080/x.png"),  # scheme
    ("http://127.0.0.1", "http://localhost/x.png"),  # host, though the same address
    ("http://10.0.0.5", "https://10.0.0.5/x.png"),  # default ports 80 and 443
]


@pytest.mark.parametrize(("base_url", "url"), SAME_ORIGIN)
def test_the_api_origin_needs_no_extra(base_url, url):
    assert same_origin(url, base_url)
    check(url, CometApiSettings(api_key="k", base_url=base_url))


@pytest.mark.parametrize(("base_url", "url"), OTHER_ORIGIN)
def test_other_private_origins_still_need_the_extra(base_url, url):
    assert not same_origin(url, base_url)
    with pytest.raises(CometAPIBadResponseError, match="allow_private_urls"):
        check(url, CometApiSettings(api_key="k", base_url=base_url))


def test_a_refusal_shows_no_credentials_query_or_key():
    url = f"http://user:hunter2@127.0.0.1:1/{PLANTED_KEY}/x.png?signature=s3cr3t#f"

    with pytest.raises(CometAPIBadResponseError) as raised:
        check(url)

    message = str(raised.value)
    assert "can be fetched from http://127.0.0.1:1/***/x.png (its query is left out" in message
    for secret in ("hunter2", "s3cr3t", PLANTED_KEY):
        assert secret not in message


def test_redirect_targets_are_made_absolute():
    assert redirect_target("http://a/x/y.png", 302, {"location": "../z.png"}) == "http://a/z.png"
    assert redirect_target("http://a/y.png", 200, {"location": "http://b"}) is None
    assert redirect_target("http://a/y.png", 301, {}) is None


def edit_through(transport, **fields):
    """One ``response_format="url"`` edit through ``cometapi_default``: outcome and sink."""
    params = EditParams(prompt="x", model="gpt-image-2", response_format="url", **fields)
    request = edit_request(image_bytes(), params)
    sink = MemorySink()
    with CometApiHook() as hook:
        if transport == "requests":
            return hook.run_edit(request, sink), sink

        async def run():
            client = AsyncCometApiClient(hook.settings)
            try:
                return await client.run_edit(request, sink)
            finally:
                await client.aclose()

        return asyncio.run(run()), sink


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_emulator_url_outputs_download_without_the_extra(
    cometapi_conn, cometapi_emulator, transport
):
    cometapi_conn(allow_private_urls=False)

    outcome, sink = edit_through(transport, n=2)

    assert [image.url.startswith(cometapi_emulator.url) for image in outcome.images] == [True] * 2
    assert [decode(sink.data(image.slot)).size for image in outcome.images] == [(64, 48)] * 2
    assert [r["path"] for r in cometapi_emulator.requests] == ["/v1/images/edits"]


@dataclass
class Seen:
    """What one stand-in server was asked: the path and headers of each GET, the POST count."""

    gets: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    posts: int = 0

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.gets]


@dataclass(frozen=True)
class Origins:
    """The API stand-in and a second loopback origin, with what each was asked."""

    api: str
    api_seen: Seen
    elsewhere: str
    elsewhere_seen: Seen


class _Server(QuietHandler):
    """Edits answer with the URL ``output`` (a path means this server); ``/away`` redirects to
    ``away``; any other GET is the image."""

    output: str
    away: str
    seen: Seen
    image = image_bytes()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.posts += 1
        host, port = self.server.server_address[:2]
        url = f"http://{host}:{port}{self.output}" if self.output.startswith("/") else self.output
        self.answer(200, json.dumps({"created": 1, "data": [{"url": url}]}).encode())

    def do_GET(self) -> None:
        self.seen.gets.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path == "/away":
            self.answer(302, headers={"Location": self.away})
        else:
            self.answer(200, self.image, "image/png")


@pytest.fixture
def servers(monkeypatch):
    """``start(output)``: an API stand-in whose edits answer with the URL ``output``, and a
    second loopback origin; ``output`` may name ``{elsewhere}``.

    ``to_elsewhere`` makes the API's ``/away`` redirect to ``{elsewhere}/paid.png``;
    ``cometapi_default`` points at the API with ``allow_private_urls`` false unless given.
    """
    with contextlib.ExitStack() as stack:

        def serve_seen(name, output="", away=""):
            seen = Seen()
            handler = type(name, (_Server,), {"output": output, "away": away, "seen": seen})
            return stack.enter_context(serve(handler)), seen

        def start(output, *, to_elsewhere=False, **extra):
            elsewhere, elsewhere_seen = serve_seen("Elsewhere")
            away = f"{elsewhere}/paid.png" if to_elsewhere else ""
            api, api_seen = serve_seen("Api", output.format(elsewhere=elsewhere), away)
            extra = {"allow_private_urls": False, "max_retries": 0, **extra}
            conn = {"conn_type": "cometapi", "host": api, "password": PLANTED_KEY, "extra": extra}
            monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
            return Origins(api, api_seen, elsewhere, elsewhere_seen)

        yield start


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_downloads_from_the_api_origin_carry_no_key(servers, transport):
    origins = servers("/image.png")

    outcome, sink = edit_through(transport)

    assert sink.data(outcome.images[0].slot) == _Server.image
    assert (origins.api_seen.posts, origins.api_seen.paths) == (1, ["/image.png"])
    headers = origins.api_seen.gets[0][1]
    assert "authorization" not in headers
    assert [value for value in headers.values() if PLANTED_KEY in value] == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_another_private_origin_is_refused_and_named(servers, transport):
    origins = servers("{elsewhere}/paid.png")

    with pytest.raises(CometAPIBadResponseError) as raised:
        edit_through(transport)

    message = str(raised.value)
    assert "data[0].url points at a non-public address (127.0.0.1)" in message
    assert (
        f"The edit was paid for: its image can be fetched from {origins.elsewhere}/paid.png"
        in message
    )
    assert PLANTED_KEY not in message
    assert (origins.api_seen.posts, origins.elsewhere_seen.paths) == (1, [])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_redirect_from_the_api_origin_to_another_private_origin_is_refused(servers, transport):
    origins = servers("/away", to_elsewhere=True)

    with pytest.raises(CometAPIBadResponseError) as raised:
        edit_through(transport)

    message = str(raised.value)
    assert (
        f"data[0].url redirects to {origins.elsewhere}/paid.png, which points at a non-public"
        in message
    )
    assert f"its image can be fetched from {origins.api}/away" in message
    assert (origins.api_seen.paths, origins.elsewhere_seen.paths) == (["/away"], [])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_extra_lets_that_redirect_through(servers, transport):
    origins = servers("/away", to_elsewhere=True, allow_private_urls=True)

    outcome, sink = edit_through(transport)

    assert sink.data(outcome.images[0].slot) == _Server.image
    assert (origins.api_seen.paths, origins.elsewhere_seen.paths) == (["/away"], ["/paid.png"])
    assert "authorization" not in origins.elsewhere_seen.gets[0][1]


class _Redirects(QuietHandler):
    """Redirects /hop/N to /hop/N+1 forever, /to-file to a file:// URL, /image to the image."""

    image = image_bytes()

    def do_GET(self) -> None:
        if self.path.startswith("/hop/"):
            self._redirect(f"/hop/{int(self.path.rsplit('/', 1)[1]) + 1}")
        elif self.path == "/to-file":
            self._redirect("file:///etc/passwd")
        elif self.path == "/twice":
            self._redirect("/once")
        elif self.path == "/once":
            self._redirect("/image")
        else:
            self.answer(200, self.image, "image/png")

    def _redirect(self, location: str) -> None:
        self.answer(302, headers={"Location": location})


@pytest.fixture
def redirector():
    with serve(_Redirects) as url:
        yield url


def download(url):
    from airflow_provider_cometapi.api.streaming import ImageUrl

    sink = MemorySink()
    with CometApiHook() as hook:
        written = hook._download(ImageUrl(url), 0, 0, sink, None)
    return written, sink.data(0)


def test_redirects_are_followed_hop_by_hop(cometapi_conn, redirector):
    written, data = download(f"{redirector}/twice")
    assert (written.mime_type, data) == ("image/png", _Redirects.image)


def test_a_redirect_to_another_scheme_is_refused(cometapi_conn, redirector):
    with pytest.raises(CometAPIBadResponseError, match="not an http") as raised:
        download(f"{redirector}/to-file")
    assert f"can be fetched from {redirector}/to-file" in str(raised.value)


def test_endless_redirects_stop(cometapi_conn, redirector):
    with pytest.raises(CometAPIBadResponseError, match="redirects more than 5") as raised:
        download(f"{redirector}/hop/0")
    assert f"can be fetched from {redirector}/hop/0" in str(raised.value)
