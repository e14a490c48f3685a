"""S3 for the tests: moto's server on 127.0.0.1 (in this process, or in a child process when
the test measures this process's memory), prefect-aws blocks pointing at it, and a tiny
loopback HTTP server for large files.
"""

from __future__ import annotations

import functools
import http.server
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect_aws import AwsClientParameters, AwsCredentials
from prefect_aws.s3 import S3Bucket
from pydantic import SecretStr

#: Fake AWS keys for moto; the tests check neither leaks into sidecars or artifacts.
AWS_KEY_ID = "AKIARUNWAYTESTKEY000"
AWS_SECRET = "runway-test-aws-secret-do-not-leak-0123456789"

_CHILD_MOTO = """
import sys, time
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()   # until the parent closes our stdin
server.stop()
"""


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 in a thread of this process, on 127.0.0.1 and a free port; yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def moto_server_process() -> Iterator[str]:
    """moto's S3 in a child process (its buffers do not count towards ours); yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD_MOTO], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().strip())
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def aws_credentials(endpoint_url: str) -> AwsCredentials:
    return AwsCredentials(
        aws_access_key_id=AWS_KEY_ID,
        aws_secret_access_key=SecretStr(AWS_SECRET),
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint_url),
    )


def new_bucket(credentials: AwsCredentials, name: str, folder: str = "") -> S3Bucket:
    client = credentials.get_s3_client()
    try:
        client.create_bucket(Bucket=name)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return S3Bucket(bucket_name=name, bucket_folder=folder, credentials=credentials)


def list_keys(bucket: S3Bucket, prefix: str = "") -> list[str]:
    client = bucket.credentials.get_s3_client()
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket.bucket_name, Prefix=prefix
    ):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)


def get_object(bucket: S3Bucket, key: str) -> bytes:
    body = bucket.credentials.get_s3_client().get_object(Bucket=bucket.bucket_name, Key=key)["Body"]
    try:
        return body.read()
    finally:
        body.close()


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return None


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (files stream from disk in 64 KiB copies)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="big-file-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)




def emulator_credentials(url: str):
    """Segmind credentials for the emulator at ``url`` (for module-scoped fixtures)."""
    from prefect_runway.blocks import SegmindCredentials
    from prefect_runway.testing.fixtures import EMULATOR_KEY

    return SegmindCredentials(
        api_key=SecretStr(EMULATOR_KEY), base_url=url, poll_interval_seconds=0.1,
        max_poll_interval_seconds=0.5, wait_timeout_seconds=60,
    )
