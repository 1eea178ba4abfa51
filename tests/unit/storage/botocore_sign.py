#!/usr/bin/env python3
"""Signs S3 requests with botocore, the reference the C++ SigV4 signer is checked against.

Used by tests/unit/storage/sigv4_test.cpp (SigV4Botocore). Reads a JSON array of requests on
stdin and prints a JSON array with, per request, the Authorization header botocore's
S3SigV4Auth computes (or, presigning, S3SigV4QueryAuth's URL), the canonical request, the
string to sign and the signature.

A request:
  method            "GET", "PUT", ...
  endpoint          "https://bucket.s3.us-east-1.amazonaws.com"
  path              the decoded path ("/my key.txt"); encoded here the way botocore's REST
                    serializer encodes an S3 key ({Key+}: everything but unreserved and '/')
  params            [[name, value], ...] decoded; a null value is a value-less parameter
                    (?uploads), which botocore writes into the URL as the bare name
  headers           [[name, value], ...] besides host (botocore takes it from the URL)
  body              optional text; botocore hashes it itself
  payload_sha256    optional: "UNSIGNED-PAYLOAD" (botocore's payload_signing_enabled=False),
                    or a hex hash to use instead of hashing the body
  region, time ("20240315T101112Z"), access_key, secret_key, token (optional)
  presign           optional true: sign with S3SigV4QueryAuth (a presigned URL) instead;
                    expires (seconds, default 3600)

Exit status 2 with a message on stderr when botocore is missing: the C++ test fails with it.
"""

import datetime
import json
import sys
from unittest import mock

try:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.config import Config
    from botocore.credentials import Credentials
    from botocore.utils import percent_encode, percent_encode_sequence
except ImportError as e:
    sys.stderr.write(
        f"botocore_sign.py: cannot import botocore ({e}); install python3-botocore "
        "(make test does: scripts/install-deps.sh test)\n"
    )
    sys.exit(2)


class Recording:
    """Keeps the intermediate results of whichever botocore signer it is mixed into."""

    last_canonical_request = None
    last_string_to_sign = None
    last_signature = None

    def canonical_request(self, request):
        self.last_canonical_request = super().canonical_request(request)
        return self.last_canonical_request

    def string_to_sign(self, request, canonical_request):
        self.last_string_to_sign = super().string_to_sign(request, canonical_request)
        return self.last_string_to_sign

    def signature(self, string_to_sign, request):
        self.last_signature = super().signature(string_to_sign, request)
        return self.last_signature


class RecordingS3Auth(Recording, botocore.auth.S3SigV4Auth):
    """S3SigV4Auth (Authorization header) that can be given the payload hash."""

    def __init__(self, credentials, region, payload_sha256=None):
        super().__init__(credentials, "s3", region)
        self.payload_sha256 = payload_sha256

    def payload(self, request):
        if self.payload_sha256 is not None:
            return self.payload_sha256
        return super().payload(request)


class RecordingS3QueryAuth(Recording, botocore.auth.S3SigV4QueryAuth):
    """S3SigV4QueryAuth: presigned URLs, always UNSIGNED-PAYLOAD."""


def fixed_clock(when):
    """Patches botocore's clock: get_current_datetime in new botocore, datetime.utcnow in old."""

    class FixedDatetime(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return when

        @classmethod
        def now(cls, tz=None):
            return when if tz is None else when.replace(tzinfo=tz)

    patches = [mock.patch.object(botocore.auth, "datetime", mock.Mock(datetime=FixedDatetime))]
    if hasattr(botocore.auth, "get_current_datetime"):
        patches.append(
            mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: when)
        )
    return patches


def sign(r):
    when = datetime.datetime.strptime(r["time"], "%Y%m%dT%H%M%SZ")
    params = r.get("params", [])
    bare = [percent_encode(name) for name, value in params if value is None]
    pairs = percent_encode_sequence([(n, v) for n, v in params if v is not None])
    query = "&".join(bare + ([pairs] if pairs else []))
    url = r["endpoint"] + percent_encode(r["path"], safe="/~") + ("?" + query if query else "")

    # A presigner moves a body into the query string, so a presigned request has none.
    body = b"" if r.get("presign") else r.get("body", "").encode("utf-8")
    request = AWSRequest(method=r["method"], url=url, data=body)
    for name, value in r.get("headers", []):
        request.headers[name] = value  # appends: a repeated name stays repeated
    creds = Credentials(r["access_key"], r["secret_key"], r.get("token") or None)
    if r.get("presign"):
        auth = RecordingS3QueryAuth(creds, "s3", r["region"], expires=r.get("expires", 3600))
    else:
        given = r.get("payload_sha256") or None
        if given == "UNSIGNED-PAYLOAD":
            request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
            given = None
        auth = RecordingS3Auth(creds, r["region"], given)

    patches = fixed_clock(when)
    for p in patches:
        p.start()
    try:
        auth.add_auth(request)
    finally:
        for p in reversed(patches):
            p.stop()
    return {
        "authorization": request.headers.get("Authorization", ""),
        "canonical_request": auth.last_canonical_request,
        "string_to_sign": auth.last_string_to_sign,
        "signature": auth.last_signature,
        "url": request.url,
    }


def main():
    requests = json.load(sys.stdin)
    json.dump([sign(r) for r in requests], sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
