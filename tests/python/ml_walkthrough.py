"""The Cloud ML Engine census walkthrough against an mlengine server, with the real
google-api-python-client and its bundled `ml` v1 discovery document.

    ml_walkthrough.py ENDPOINT WORK_DIR

WORK_DIR holds export1/ and export2/ (two exported versions), instances.json (JSON lines),
train.csv and eval.csv (census files). Prints one JSON object of what happened; the Rust test
asserts on it. Polls operations and jobs as clients do (a short pause between reads of a state).
"""
import json
import os
import sys
import time

from google.auth.credentials import AnonymousCredentials
from googleapiclient import discovery, errors

P = "projects/my-project"
POLL_S = 0.1
LIMIT_S = 120


def wait(read, done):
    deadline = time.time() + LIMIT_S
    while True:
        value = read()
        if done(value):
            return value
        if time.time() > deadline:
            raise RuntimeError(f"still not done: {value}")
        time.sleep(POLL_S)


def http_error(call):
    try:
        call()
    except errors.HttpError as e:
        body = json.loads(e.content.decode())
        return {"status": e.status_code, "error": body["error"]}
    return {"status": 200}


def main():
    endpoint, work = sys.argv[1:3]
    ml = discovery.build(
        "ml", "v1", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )
    models = ml.projects().models()
    versions = models.versions()
    operations = ml.projects().operations()
    jobs = ml.projects().jobs()
    out = {}
    instance = json.loads(open(os.path.join(work, "instances.json")).readline())

    out["model"] = models.create(parent=P, body={"name": "census", "regions": ["us-central1"]}).execute()

    def deploy(name, folder):
        op = versions.create(
            parent=P + "/models/census",
            body={"name": name, "deploymentUri": os.path.join(work, folder), "runtimeVersion": "1.0"},
        ).execute()
        first = dict(op)
        op = wait(lambda: operations.get(name=op["name"]).execute(), lambda o: o.get("done"))
        return first, op

    out["v1_created"], out["v1_done"] = deploy("v1", "export1")
    out["predict_default"] = ml.projects().predict(
        name=P + "/models/census", body={"instances": [instance]}
    ).execute()
    out["v2_created"], out["v2_done"] = deploy("v2", "export2")
    out["predict_v2"] = ml.projects().predict(
        name=P + "/models/census/versions/v2", body={"instances": [instance]}
    ).execute()
    out["set_default"] = versions.setDefault(name=P + "/models/census/versions/v2", body={}).execute()
    out["model_after_default"] = models.get(name=P + "/models/census").execute()
    out["predict_default_after"] = ml.projects().predict(
        name=P + "/models/census", body={"instances": [instance]}
    ).execute()

    # A prediction job on JSON lines, through the named version v1.
    jobs.create(
        parent=P,
        body={
            "jobId": "census_batch_1",
            "predictionInput": {
                "dataFormat": "JSON",
                "inputPaths": [os.path.join(work, "instances.json")],
                "outputPath": os.path.join(work, "predictions"),
                "region": "us-central1",
                "versionName": P + "/models/census/versions/v1",
            },
        },
    ).execute()
    final = ("SUCCEEDED", "FAILED", "CANCELLED")
    out["batch_job"] = wait(
        lambda: jobs.get(name=P + "/jobs/census_batch_1").execute(), lambda j: j["state"] in final
    )

    # A short training job, then its description.
    jobs.create(
        parent=P,
        body={
            "jobId": "census_train_1",
            "trainingInput": {
                "scaleTier": "BASIC",
                "region": "us-central1",
                "jobDir": os.path.join(work, "train_job"),
                "args": [
                    "--train-files", os.path.join(work, "train.csv"),
                    "--eval-files", os.path.join(work, "eval.csv"),
                    "--train-steps", "5",
                ],
            },
        },
    ).execute()
    out["train_job"] = wait(
        lambda: jobs.get(name=P + "/jobs/census_train_1").execute(), lambda j: j["state"] in final
    )

    # A long one, cancelled while it runs.
    jobs.create(
        parent=P,
        body={
            "jobId": "census_train_long",
            "trainingInput": {
                "scaleTier": "BASIC",
                "region": "us-central1",
                "jobDir": os.path.join(work, "long_job"),
                "args": [
                    "--train-files", os.path.join(work, "train.csv"),
                    "--eval-files", os.path.join(work, "eval.csv"),
                    "--train-steps", "1000000000",
                ],
            },
        },
    ).execute()
    wait(lambda: jobs.get(name=P + "/jobs/census_train_long").execute(), lambda j: j["state"] == "RUNNING")
    out["cancel"] = jobs.cancel(name=P + "/jobs/census_train_long", body={}).execute()
    out["cancelled_job"] = wait(
        lambda: jobs.get(name=P + "/jobs/census_train_long").execute(), lambda j: j["state"] in final
    )

    # Paging, one job a page.
    ids, request = [], jobs.list(parent=P, pageSize=1)
    while request is not None:
        page = request.execute()
        ids += [j["jobId"] for j in page.get("jobs", [])]
        request = jobs.list_next(previous_request=request, previous_response=page)
    out["listed_job_ids"] = ids
    out["filtered"] = [j["jobId"] for j in jobs.list(parent=P, filter="jobId:census_train*").execute().get("jobs", [])]
    out["operations"] = len(operations.list(name=P).execute().get("operations", []))

    # The rules, each refused with its code.
    out["errors"] = {
        "duplicate_model": http_error(lambda: models.create(parent=P, body={"name": "census"}).execute()),
        "bad_model_name": http_error(lambda: models.create(parent=P, body={"name": "census-2"}).execute()),
        "unknown_field": http_error(lambda: models.create(parent=P, body={"name": "m", "nope": 1}).execute()),
        "missing_model": http_error(lambda: models.get(name=P + "/models/nosuch").execute()),
        "delete_model_with_versions": http_error(lambda: models.delete(name=P + "/models/census").execute()),
        "delete_default_version": http_error(
            lambda: versions.delete(name=P + "/models/census/versions/v2").execute()
        ),
        "duplicate_version": http_error(
            lambda: versions.create(
                parent=P + "/models/census", body={"name": "v1", "deploymentUri": os.path.join(work, "export1")}
            ).execute()
        ),
        "outside_roots": http_error(
            lambda: versions.create(
                parent=P + "/models/census", body={"name": "v9", "deploymentUri": "/etc"}
            ).execute()
        ),
        "duplicate_job": http_error(
            lambda: jobs.create(parent=P, body={"jobId": "census_train_1", "trainingInput": {"args": []}}).execute()
        ),
        "cancel_finished": http_error(lambda: jobs.cancel(name=P + "/jobs/census_train_1", body={}).execute()),
        "missing_operation": http_error(lambda: operations.get(name=P + "/operations/nope").execute()),
    }

    # Versions, then the model, deleted.
    for v in ("v1", "v2"):
        op = versions.delete(name=P + f"/models/census/versions/{v}").execute()
        wait(lambda: operations.get(name=op["name"]).execute(), lambda o: o.get("done"))
    out["versions_after_delete"] = versions.list(parent=P + "/models/census").execute()
    out["model_delete"] = models.delete(name=P + "/models/census").execute()
    out["models_after_delete"] = models.list(parent=P).execute()
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
