"""Call an mlengine server with the official Google API Python client (Cloud ML Engine v1).

    googleapi_predict.py BASE_URL MODEL INSTANCES.jsonl [VERSION]

BASE_URL is e.g. http://127.0.0.1:8080 (no /v1). Builds the `ml` v1 client from the discovery
document shipped in the package (static_discovery=True, no network), with a plain
httplib2.Http() so no Google credentials are looked up, and calls
projects().predict(name='projects/test-project/models/MODEL[/versions/VERSION]',
body={'instances': [...]}) -> POST BASE_URL/v1/projects/test-project/models/MODEL[...]:predict?alt=json.
Prints the response JSON on stdout. On HttpError prints the status and body on stderr, exits 3.
"""
import json
import sys

import httplib2
from googleapiclient import discovery
from googleapiclient.errors import HttpError


def main() -> int:
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    base_url, model, instances_path = sys.argv[1:4]
    version = sys.argv[4] if len(sys.argv) == 5 else None

    with open(instances_path) as f:
        instances = [json.loads(line) for line in f if line.strip()]

    ml = discovery.build(
        "ml",
        "v1",
        client_options={"api_endpoint": base_url},
        http=httplib2.Http(),
        static_discovery=True,
        cache_discovery=False,
    )
    name = f"projects/test-project/models/{model}"
    if version is not None:
        name += f"/versions/{version}"
    try:
        response = ml.projects().predict(name=name, body={"instances": instances}).execute()
    except HttpError as e:
        body = e.content.decode("utf-8", "replace") if isinstance(e.content, bytes) else str(e.content)
        print(f"HttpError {e.resp.status}: {body}", file=sys.stderr)
        return 3
    json.dump(response, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
