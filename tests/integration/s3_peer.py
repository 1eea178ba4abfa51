#!/usr/bin/env python3
"""boto3 as an independent S3 client for hylab's storage tests.

Usage: s3_peer.py ENDPOINT COMMAND ARGS...
  create-bucket BUCKET
  put BUCKET KEY FILE [SHA256]   upload FILE (single PUT), with a sha256 metadata if given
  get BUCKET KEY FILE            download to FILE
  head BUCKET KEY                print {"size", "etag", "metadata"} as JSON (exit 3 if missing)
  count BUCKET PREFIX            print how many keys are under PREFIX (all pages)
Credentials are s3rver's fixed S3RVER:S3RVER; path-style addressing.
"""
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main():
    endpoint, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="S3RVER", aws_secret_access_key="S3RVER",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))
    if cmd == "create-bucket":
        s3.create_bucket(Bucket=args[0])
    elif cmd == "put":
        meta = {"sha256": args[3]} if len(args) > 3 else {}
        with open(args[2], "rb") as f:
            s3.put_object(Bucket=args[0], Key=args[1], Body=f.read(), Metadata=meta)
    elif cmd == "get":
        body = s3.get_object(Bucket=args[0], Key=args[1])["Body"].read()
        with open(args[2], "wb") as f:
            f.write(body)
    elif cmd == "head":
        try:
            h = s3.head_object(Bucket=args[0], Key=args[1])
        except ClientError as e:
            print(json.dumps({"error": str(e)}))
            sys.exit(3)
        print(json.dumps({"size": h["ContentLength"], "etag": h["ETag"].strip('"'),
                          "metadata": h.get("Metadata", {})}))
    elif cmd == "count":
        n = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args[0], Prefix=args[1]):
            n += len(page.get("Contents", []))
        print(n)
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
