"""The write probe run before any paid edit, against real local folders and a real S3 server."""

from __future__ import annotations

import json
import logging
import os
import urllib.request
import uuid

import pytest

from airflow_provider_cometapi.exceptions import CometAPIOutputError
from airflow_provider_cometapi.storage.probe import probe_output_folder
from tests.s3 import ACCESS, S3_CONN_ID, connection_json

NOTHING_PAID = "Nothing was paid for yet"


def new_bucket(s3) -> str:
    bucket = f"probe-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return bucket


def writes_anyway(folder) -> bool:
    """Whether this process writes into ``folder`` despite its mode: root with CAP_DAC_OVERRIDE."""
    try:
        (folder / "try").write_bytes(b"")
    except PermissionError:
        return False
    (folder / "try").unlink()
    return True


def all_keys(s3, bucket: str) -> list[str]:
    """Every key in ``bucket``, hidden ones included."""
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_a_local_folder_is_created_and_nothing_is_left_in_it(tmp_path, scheme):
    folder = tmp_path / "new" / "out"

    probe_output_folder(f"{scheme}{folder}/", None)

    assert folder.is_dir()
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("under", ["taken/out/", "taken/"])
def test_a_local_folder_under_a_file_is_refused(tmp_path, under):
    (tmp_path / "taken").write_bytes(b"a file, not a folder")
    folder = f"{tmp_path}/{under}"

    with pytest.raises(CometAPIOutputError) as caught:
        probe_output_folder(folder, None)

    message = str(caught.value)
    assert folder in message
    assert "Part of the path is an existing file" in message
    assert NOTHING_PAID in message


def test_an_unwritable_local_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if writes_anyway(locked):
            pytest.skip(f"euid {os.geteuid()} writes into a read-only folder (root)")
        with pytest.raises(CometAPIOutputError) as caught:
            probe_output_folder(f"{locked}/", None)
    finally:
        locked.chmod(0o700)

    message = str(caught.value)
    assert f"{locked}/" in message
    assert "Permission was refused" in message
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("form", ["conn_id argument", "conn_id@ in the URI"])
def test_an_s3_folder_takes_the_probe_and_keeps_nothing(s3, form):
    bucket = new_bucket(s3)
    if form == "conn_id argument":
        probe_output_folder(f"s3://{bucket}/out/", S3_CONN_ID)
    else:
        probe_output_folder(f"s3://{S3_CONN_ID}@{bucket}/out/", None)

    assert all_keys(s3, bucket) == []


def test_a_missing_bucket_is_named_as_missing(s3):
    folder = f"s3://missing-{uuid.uuid4().hex[:12]}/out/"

    with pytest.raises(CometAPIOutputError) as caught:
        probe_output_folder(folder, S3_CONN_ID)

    message = str(caught.value)
    assert folder in message
    assert "The bucket does not exist" in message
    assert NOTHING_PAID in message


@pytest.mark.parametrize("form", ["conn_id argument", "conn_id@ in the URI"])
def test_an_unknown_connection_is_refused_before_any_write(s3, form):
    """Airflow's S3 filesystem only warns and falls back to ambient credentials: the probe asks."""
    bucket = new_bucket(s3)
    if form == "conn_id argument":
        folder, conn_id = f"s3://{bucket}/out/", "no_such_conn"
    else:
        folder, conn_id = f"s3://no_such_conn@{bucket}/out/", None

    with pytest.raises(CometAPIOutputError) as caught:
        probe_output_folder(folder, conn_id)

    message = str(caught.value)
    assert folder in message
    assert "'no_such_conn'" in message
    assert "The connection does not exist" in message
    assert all_keys(s3, bucket) == []


def test_an_unreachable_endpoint_keeps_the_connection_extras_out_of_the_message(s3, monkeypatch):
    endpoint = "http://127.0.0.1:9/token-in-the-endpoint-0123456789"
    conn = json.loads(connection_json(endpoint))
    conn["extra"]["config_kwargs"] = {"retries": {"max_attempts": 1}}
    monkeypatch.setenv("AIRFLOW_CONN_S3_UNREACHABLE", json.dumps(conn))
    folder = "s3://some-bucket/out/"

    with pytest.raises(CometAPIOutputError) as caught:
        probe_output_folder(folder, "s3_unreachable")

    message = str(caught.value)
    assert folder in message
    assert "EndpointConnectionError" in message
    assert "***" in message
    assert "token-in-the-endpoint" not in message


@pytest.fixture
def checked_keys(s3, s3_endpoint, monkeypatch):
    """Turn on the S3 server's IAM checks (moto's access control, process-wide) for one test.

    Yields a bucket, ``keys(name)``: the connection id of a key that writes (``writer``), only
    reads (``reader``), writes but may not delete (``no_delete``), has a wrong secret
    (``wrong_secret``) or is unknown (``unknown``), and a boto3 client with the writer's key.
    """
    import boto3

    bucket = new_bucket(s3)
    iam = boto3.client("iam", endpoint_url=s3_endpoint, region_name="us-east-1", **ACCESS)
    suffix = uuid.uuid4().hex[:8]
    logins = {}
    policies = {
        "writer": ["s3:*"],
        "reader": ["s3:GetObject", "s3:ListBucket"],
        "no_delete": ["s3:PutObject", "s3:GetObject", "s3:ListBucket"],
    }
    for name, actions in policies.items():
        user = f"{name}-{suffix}"
        iam.create_user(UserName=user)
        statement = {"Effect": "Allow", "Action": actions, "Resource": "*"}
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        iam.put_user_policy(UserName=user, PolicyName="probe", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        logins[name] = (key["AccessKeyId"], key["SecretAccessKey"])
    logins["wrong_secret"] = (logins["writer"][0], "wrong-secret-0123456789")
    logins["unknown"] = ("AKIAUNKNOWN000000000", "unknown-secret-0123456789")
    for name, (login, password) in logins.items():
        conn = dict(json.loads(connection_json(s3_endpoint)), login=login, password=password)
        monkeypatch.setenv(f"AIRFLOW_CONN_S3_{name.upper()}_{suffix.upper()}", json.dumps(conn))

    _moto_auth(s3_endpoint, "0")
    try:
        login, password = logins["writer"]
        writer = boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=login,
            aws_secret_access_key=password,
        )
        yield bucket, lambda name: f"s3_{name}_{suffix}", writer
    finally:
        _moto_auth(s3_endpoint, "inf")


def _moto_auth(endpoint: str, unchecked_requests: str) -> None:
    """Let ``unchecked_requests`` through before moto checks keys ("inf": never check)."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=unchecked_requests.encode(),
        headers={"Content-Type": "text/plain"},
        method="POST",
    )
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 200


def test_the_right_key_passes_while_the_server_checks_keys(checked_keys):
    bucket, keys, writer = checked_keys

    probe_output_folder(f"s3://{bucket}/out/", keys("writer"))

    assert all_keys(writer, bucket) == []


@pytest.mark.parametrize(
    ("key", "cause"),
    [
        ("wrong_secret", "signature we calculated does not match"),  # SignatureDoesNotMatch
        ("unknown", "does not exist in our records"),  # InvalidAccessKeyId
        ("reader", "Access Denied"),  # AccessDenied: the key may read, not write
    ],
)
def test_a_refused_key_is_named_as_refused(checked_keys, key, cause):
    bucket, keys, _ = checked_keys
    folder = f"s3://{bucket}/out/"

    with pytest.raises(CometAPIOutputError) as caught:
        probe_output_folder(folder, keys(key))

    message = str(caught.value)
    assert folder in message
    assert keys(key) in message
    assert "Permission was refused" in message
    assert cause in message
    assert "wrong-secret" not in message
    assert "unknown-secret" not in message


def test_a_probe_that_cannot_be_removed_only_warns(checked_keys, caplog):
    bucket, keys, writer = checked_keys
    caplog.set_level(logging.WARNING, logger="airflow_provider_cometapi.storage.probe")

    probe_output_folder(f"s3://{bucket}/out/", keys("no_delete"))

    (left,) = all_keys(writer, bucket)
    assert left.startswith("out/.cometapi-probe-")
    assert "Could not remove the write probe" in caplog.text
    assert left.rpartition("/")[2] in caplog.text
