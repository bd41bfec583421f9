"""The `ml` v1 client (google-api-python-client) against an mlengine server with tokens and TLS.

    ml_secure.py ENDPOINT CA_FILE INSTANCES.jsonl TOKEN...

ENDPOINT is https://HOST:PORT; CA_FILE the PEM certificate that signed the server's. For each
TOKEN (the literal `-` for none) it builds the client from the bundled discovery document over an
httplib2.Http that trusts CA_FILE and sends `Authorization: Bearer TOKEN`, then calls
projects.models.list and projects.predict (model census). It also reads /metrics with no token.
Prints one JSON object: {"calls": {TOKEN: {"list": {"status", "error"?}, "predict": {...}}},
"metrics": status}.
"""
import json
import ssl
import sys
import urllib.request

import httplib2
from googleapiclient import discovery, errors


class BearerHttp(httplib2.Http):
    def __init__(self, token, ca_file):
        super().__init__(ca_certs=ca_file)
        self.token = token

    def request(self, uri, method="GET", body=None, headers=None, *args, **kwargs):
        headers = dict(headers or {})
        if self.token is not None:
            headers["authorization"] = f"Bearer {self.token}"
        return super().request(uri, method, body, headers, *args, **kwargs)


def outcome(call):
    try:
        call()
    except errors.HttpError as e:
        return {"status": e.status_code, "error": json.loads(e.content.decode())["error"]}
    return {"status": 200}


def main():
    endpoint, ca_file, instances_path, *tokens = sys.argv[1:]
    with open(instances_path) as f:
        instances = [json.loads(line) for line in f if line.strip()]
    calls = {}
    for token in tokens:
        ml = discovery.build(
            "ml",
            "v1",
            client_options={"api_endpoint": endpoint},
            http=BearerHttp(None if token == "-" else token, ca_file),
            static_discovery=True,
            cache_discovery=False,
        )
        projects = ml.projects()
        calls[token] = {
            "list": outcome(lambda: projects.models().list(parent="projects/p").execute()),
            "predict": outcome(
                lambda: projects.predict(
                    name="projects/p/models/census", body={"instances": instances}
                ).execute()
            ),
        }
    context = ssl.create_default_context(cafile=ca_file)
    with urllib.request.urlopen(f"{endpoint}/metrics", context=context) as r:
        metrics = r.status
    json.dump({"calls": calls, "metrics": metrics}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
