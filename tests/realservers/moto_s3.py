"""S3 for tests: moto's threaded server, a TEST DOUBLE of Amazon S3 on loopback.

moto (``moto[server]``) implements the S3 REST API (SigV4-signed requests,
Range GETs, multipart uploads) in-process; phonebridge's real S3 client
(boto3) talks HTTP to it on 127.0.0.1. It is not a real S3 (no replication,
no eventual consistency, one in-memory state per test process): what it proves
is that the client side follows the protocol, not how AWS behaves under load.
"""

from __future__ import annotations

from moto.server import ThreadedMotoServer

BUCKET = "phonebridge-test"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing-secret"
REGION = "us-east-1"


class MotoS3:
    """``with MotoS3() as s3: s3.url``; ``port`` to come back on a known address."""

    def __init__(self, port: int = 0) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.url = ""

    def __enter__(self) -> MotoS3:
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        inner = self.server._server
        if inner is not None:
            inner.server_close()
