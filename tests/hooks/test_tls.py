"""The ``verify`` extra decides TLS verification, even with REQUESTS_CA_BUNDLE set: real TLS."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl

import certifi
import pytest
import requests

from airflow_provider_cometapi.exceptions import CometAPIConnectionError
from airflow_provider_cometapi.hooks.cometapi import CometApiHook
from tests.httpserver import QuietHandler, serve
from tests.imaging import image_bytes

MODELS = json.dumps({"object": "list", "data": [{"id": "gpt-image-2", "object": "model"}]})


def _certificate(subject, public_key, issuer, issuer_key, extensions):
    """A one-day certificate of ``subject``, signed by ``issuer``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A test CA and a ``127.0.0.1`` server certificate it signed: (CA file, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    signs_certificates = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    ca_extensions = [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (signs_certificates, True),
    ]
    ca = _certificate(
        name("cometapi test CA"),
        ca_key.public_key(),
        name("cometapi test CA"),
        ca_key,
        ca_extensions,
    )
    loopback = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    server_extensions = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (loopback, False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    ]
    server = _certificate(
        name("127.0.0.1"), key.public_key(), ca.subject, ca_key, server_extensions
    )
    folder = tmp_path_factory.mktemp("tls")
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tuple(str(path) for path in paths)


class _Models(QuietHandler):
    """Answers every GET with a model list, as the emulator's ``GET /v1/models`` does."""

    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.answer(200, MODELS.encode())


@pytest.fixture
def tls_api(certificates, monkeypatch):
    """An HTTPS model list on loopback; returns a setter of the ``cometapi_default`` extras."""
    _, cert, key = certificates
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    handler = type("Models", (_Models,), {"seen": []})
    with serve(handler, tls=context) as url:

        def configure(**extra):
            conn = {"conn_type": "cometapi", "host": url, "password": "key-12345", "extra": extra}
            monkeypatch.setenv("AIRFLOW_CONN_COMETAPI_DEFAULT", json.dumps(conn))
            return handler.seen

        yield configure


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_verify_ca_file_wins_over_the_ca_bundle_variables(
    tls_api, certificates, monkeypatch, variable
):
    monkeypatch.setenv(variable, certifi.where())  # a bundle without the test CA
    seen = tls_api(verify=certificates[0])

    with CometApiHook() as hook:
        ok, message = hook.test_connection()

    assert ok, message
    assert seen == ["/v1/models"]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_false_wins_over_requests_ca_bundle(tls_api, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    seen = tls_api(verify="false")

    with CometApiHook() as hook:
        ok, message = hook.test_connection()

    assert ok, message
    assert seen == ["/v1/models"]


def test_default_verify_refuses_an_unknown_ca(tls_api, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    seen = tls_api()

    with CometApiHook() as hook, pytest.raises(CometAPIConnectionError) as raised:
        hook.edit_image(image_bytes(), "Add a ribbon")

    assert isinstance(raised.value.__cause__, requests.exceptions.SSLError)
    assert "Could not reach CometAPI at https://127.0.0.1:" in str(raised.value)
    assert seen == []
