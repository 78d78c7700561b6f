"""Output URLs are fetched over http(s) only, from public addresses, each redirect re-checked."""

from __future__ import annotations

import pytest

from airflow_provider_cometapi.api.urls import check_download_url, redirect_target
from airflow_provider_cometapi.exceptions import CometAPIBadResponseError
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from tests.httpserver import QuietHandler, serve
from tests.imaging import image_bytes

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


@pytest.mark.parametrize("url", REFUSED)
def test_non_public_or_non_http_urls_are_refused(url):
    with pytest.raises(CometAPIBadResponseError, match=r"data\[0\]\.url"):
        check_download_url(url, allow_private=False, label="data[0].url")


def test_public_addresses_pass_and_the_extra_allows_private_ones():
    check_download_url("https://8.8.8.8/x.png", allow_private=False, label="u")
    check_download_url("http://127.0.0.1:1/x.png", allow_private=True, label="u")


def test_redirect_targets_are_made_absolute():
    assert redirect_target("http://a/x/y.png", 302, {"location": "../z.png"}) == "http://a/z.png"
    assert redirect_target("http://a/y.png", 200, {"location": "http://b"}) is None
    assert redirect_target("http://a/y.png", 301, {}) is None


def test_loopback_url_output_is_refused_without_the_extra(cometapi_conn, cometapi_emulator):
    cometapi_conn(allow_private_urls=False)
    with pytest.raises(CometAPIBadResponseError, match="allow_private_urls"):
        CometApiHook().edit_image(image_bytes(), "x", response_format="url")
    assert [r["path"] for r in cometapi_emulator.requests] == ["/v1/images/edits"]


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
    from airflow_provider_cometapi.api.sinks import MemorySink
    from airflow_provider_cometapi.api.streaming import ImageUrl

    sink = MemorySink()
    with CometApiHook() as hook:
        written = hook._download(ImageUrl(url), 0, 0, sink, None)
    return written, sink.data(0)


def test_redirects_are_followed_hop_by_hop(cometapi_conn, redirector):
    written, data = download(f"{redirector}/twice")
    assert (written.mime_type, data) == ("image/png", _Redirects.image)


def test_a_redirect_to_another_scheme_is_refused(cometapi_conn, redirector):
    with pytest.raises(CometAPIBadResponseError, match="not an http"):
        download(f"{redirector}/to-file")


def test_endless_redirects_stop(cometapi_conn, redirector):
    with pytest.raises(CometAPIBadResponseError, match="redirects more than 5"):
        download(f"{redirector}/hop/0")
