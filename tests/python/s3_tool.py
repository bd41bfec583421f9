"""Small S3 helper for the tests, through boto3 against a moto_server endpoint.

    s3_tool.py ENDPOINT mb BUCKET
    s3_tool.py ENDPOINT put BUCKET KEY LOCAL_FILE
    s3_tool.py ENDPOINT putdir BUCKET PREFIX LOCAL_DIR   (every file, model.onnx last)
    s3_tool.py ENDPOINT ls BUCKET PREFIX          (prints one key per line)
    s3_tool.py ENDPOINT get BUCKET KEY            (prints the object to stdout)
    s3_tool.py ENDPOINT download BUCKET KEY LOCAL_FILE
    s3_tool.py ENDPOINT rm BUCKET KEY
"""
import sys

import boto3


def main() -> int:
    endpoint, command, bucket, *rest = sys.argv[1:]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    if command == "mb":
        s3.create_bucket(Bucket=bucket)
    elif command == "put":
        key, path = rest
        with open(path, "rb") as f:
            s3.put_object(Bucket=bucket, Key=key, Body=f.read())
    elif command == "putdir":
        import os

        prefix, root = rest
        files = sorted(
            os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
        )
        files.sort(key=lambda f: f == "model.onnx")
        for f in files:
            with open(os.path.join(root, f), "rb") as body:
                s3.put_object(Bucket=bucket, Key=f"{prefix}/{f}", Body=body.read())
    elif command == "ls":
        (prefix,) = rest
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                print(obj["Key"])
    elif command == "get":
        (key,) = rest
        sys.stdout.buffer.write(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    elif command == "download":
        key, path = rest
        with open(path, "wb") as f:
            f.write(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    elif command == "rm":
        (key,) = rest
        s3.delete_object(Bucket=bucket, Key=key)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
