"""A real S3-protocol server (moto's server mode) on loopback, and an Airflow ``aws`` connection."""

from __future__ import annotations

import json
import logging
import socket
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

S3_CONN_ID = "s3_test"
ACCESS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@contextmanager
def s3_server() -> Iterator[str]:
    """Serve S3 on a free loopback port; yield the endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def connection_json(endpoint: str) -> str:
    """An Airflow ``aws`` connection to the local server."""
    extra = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    return json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
    )


def client(endpoint: str):
    """A boto3 S3 client for the local server."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **ACCESS)


def visible_keys(s3, bucket: str, prefix: str = "") -> list[str]:
    """Sorted keys under ``prefix``, without the provider's hidden bookkeeping (``/.`` parts)."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed if "/." not in "/" + o["Key"])


def vanish_while_paying(s3: Any, bucket: str, latency_gate: Any) -> threading.Thread:
    """Start a thread that empties and deletes ``bucket`` while the emulator holds the first
    edit (``latency_gate``, with the emulator's latency set), then lets the answer go: storage
    fails an edit that is being paid for. Join it after the run."""

    def vanish() -> None:
        latency_gate.wait_for_pauses(1)  # probed and claimed; the edit is being paid for
        for listed in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=listed["Key"])
        s3.delete_bucket(Bucket=bucket)
        latency_gate.release()

    vanishing = threading.Thread(target=vanish)
    vanishing.start()
    return vanishing
