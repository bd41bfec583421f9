"""Writes the custom resources' JSON schemas that deploy/validate.py checks manifests against.

Each comes from its project's repository at a recorded commit: the openAPIV3Schema of a CRD, or
for Katib's Experiment (whose CRD declares no schema: x-kubernetes-preserve-unknown-fields) the
OpenAPI definitions Katib generates from its Go types. Descriptions are dropped (they are most of
the bytes); nothing else is changed here. validate.py makes the schemas strict when it loads them.

    python deploy/kubernetes/schemas/extract.py MIRRORS_DIR
        MIRRORS_DIR holds bare clones named owner+repo/repo (kserve+kserve, kubeflow+mpi-operator,
        kubeflow+katib, prometheus-operator+prometheus-operator)
"""

import gzip
import json
import os
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))

CRDS = [
    # (file, repository, path, CRD version)
    ("serving.kserve.io_v1beta1_InferenceService.json", "kserve/kserve",
     "config/crd/full/serving.kserve.io_inferenceservices.yaml", "v1beta1"),
    ("serving.kserve.io_v1alpha1_ClusterServingRuntime.json", "kserve/kserve",
     "config/crd/full/serving.kserve.io_clusterservingruntimes.yaml", "v1alpha1"),
    ("kubeflow.org_v2beta1_MPIJob.json", "kubeflow/mpi-operator",
     "manifests/base/kubeflow.org_mpijobs.yaml", "v2beta1"),
    ("monitoring.coreos.com_v1_ServiceMonitor.json", "prometheus-operator/prometheus-operator",
     "example/prometheus-operator-crd-full/monitoring.coreos.com_servicemonitors.yaml", "v1"),
]
KATIB = ("kubeflow.org_v1beta1_Experiment.json", "kubeflow/katib",
         "api/openapi-spec/swagger.json", "v1beta1.Experiment")


def strip(node, fields=False):
    """Drops descriptions; `fields` marks a `properties` map, whose keys are field names (Katib's
    trial parameters have a field called description)."""
    if isinstance(node, dict):
        return {k: strip(v, k == "properties" and not fields) for k, v in node.items()
                if fields or not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def git(mirrors, repo, *args):
    return subprocess.run(["git", "-C", os.path.join(mirrors, repo.replace("/", "+"), "repo"), *args],
                          check=True, capture_output=True, text=True).stdout


def main(mirrors):
    sources = {}
    for out, repo, path, version in CRDS:
        crd = yaml.safe_load(git(mirrors, repo, "show", f"HEAD:{path}"))
        (schema,) = [v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]
                     if v["name"] == version]
        write(out, strip(schema))
        sources[out + ".gz"] = source(mirrors, repo, path)
    out, repo, path, root = KATIB
    spec = json.loads(git(mirrors, repo, "show", f"HEAD:{path}"))
    defs = strip(spec["components"]["schemas"])
    text = json.dumps({"$ref": f"#/$defs/{root}", "$defs": defs})
    write(out, json.loads(text.replace("#/components/schemas/", "#/$defs/")))
    sources[out + ".gz"] = source(mirrors, repo, path)
    with open(os.path.join(HERE, "sources.json"), "w") as f:
        json.dump(sources, f, indent=2, sort_keys=True)
        f.write("\n")


def source(mirrors, repo, path):
    return {"repository": f"https://github.com/{repo}",
            "commit": git(mirrors, repo, "rev-parse", "HEAD").strip(), "path": path}


def write(name, schema):
    # Compressed: InferenceService's schema alone is 0.6 MB of JSON. mtime=0 keeps it reproducible.
    data = json.dumps(schema, separators=(",", ":"), sort_keys=True).encode()
    with open(os.path.join(HERE, name + ".gz"), "wb") as f:
        f.write(gzip.compress(data, mtime=0))


if __name__ == "__main__":
    main(sys.argv[1])
