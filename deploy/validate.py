"""Offline checks of everything in deploy/, without a cluster (tests/deploy.rs runs this).

- Every YAML file parses; every kustomization renders (kustomize), and so does the base with
  each component.
- Core objects validate against Kubernetes' OpenAPI schemas (kubernetes-validate, strict: an
  unknown field is an error) for the oldest and newest Kubernetes versions in K8S_VERSIONS.
- Custom resources validate against their CRDs' schemas (kubernetes/schemas/, see extract.py),
  made strict the same way; the Job inside Katib's trial template against Kubernetes' own.
- Every container that runs mlengine uses only flags and MLENGINE_* variables the binary has
  (`mlengine <command> --help`); a server's declared ports, probes and Service ports are the ports
  it listens on; its termination grace outlasts --shutdown-grace-seconds; its image is one the
  Dockerfile builds, with a shell where Katib or the MPI Operator need one.
- Every container of the project's images runs hardened, on its own or through its pod: non-root,
  no privilege escalation, every capability dropped, the runtime's default seccomp profile.
- The Dockerfile passes hadolint.

    validate.py --mlengine BIN --kustomize BIN --hadolint BIN [--root DEPLOY_DIR]

Prints what it checked as one JSON object; exits 1 listing every problem found.
"""

import argparse
import copy
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSIONS = ["1.29", "1.37"]
RENDERED = ["base", "overlays/cpu", "overlays/cuda", "overlays/control-plane", "kserve", "jobs"]
SUBCOMMANDS = ["serve", "train", "tune", "predict", "batch-predict", "bench-ort", "health"]
# The images the Dockerfile builds (its targets), and the ones with a shell and OpenMPI.
IMAGES = {"mlengine:latest", "mlengine:cuda", "mlengine:jobs"}
SHELL_IMAGES = {"mlengine:jobs"}
DEFAULT_PORTS = {"--rest-port": 8080, "--grpc-port": 8500}
DEFAULT_GRACE = 30


class Checker:
    def __init__(self, args):
        self.args = args
        self.k8s = os.path.join(args.root, "kubernetes")
        self.problems = []
        self.checked = {"files": 0, "renders": [], "objects": {}, "containers": 0}
        self.helps = {}
        self.schemas = {}
        self.serve_ports_seen = []
        self.runtime_grpc = None

    def problem(self, where, message):
        self.problems.append(f"{where}: {message}")

    # --- parsing and rendering ---------------------------------------------------------------

    def parse_all(self):
        for folder, _, files in os.walk(self.args.root):
            for name in sorted(files):
                if name.endswith((".yaml", ".yml")):
                    path = os.path.join(folder, name)
                    try:
                        with open(path) as f:
                            list(yaml.safe_load_all(f))
                        self.checked["files"] += 1
                    except yaml.YAMLError as e:
                        self.problem(os.path.relpath(path, self.args.root), f"does not parse: {e}")

    def render(self, folder, label):
        out = subprocess.run([self.args.kustomize, "build", folder], capture_output=True, text=True)
        if out.returncode != 0:
            self.problem(label, f"kustomize build failed: {out.stderr.strip()}")
            return []
        self.checked["renders"].append(label)
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    def rendered(self):
        docs = []
        for rel in RENDERED:
            for d in self.render(os.path.join(self.k8s, rel), rel):
                docs.append((rel, d))
        # Each component on the base alone, so that its patches are proven to apply.
        components = os.path.join(self.k8s, "components")
        for name in sorted(os.listdir(components)):
            with tempfile.TemporaryDirectory() as tmp:
                with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
                    yaml.safe_dump({
                        "apiVersion": "kustomize.config.k8s.io/v1beta1",
                        "kind": "Kustomization",
                        "resources": [os.path.relpath(os.path.join(self.k8s, "base"), tmp)],
                        "components": [os.path.relpath(os.path.join(components, name), tmp)],
                    }, f)
                label = f"base+components/{name}"
                for d in self.render(tmp, label):
                    docs.append((label, d))
        return docs

    # --- schemas -----------------------------------------------------------------------------

    def validate(self, where, doc):
        kind, api = doc.get("kind"), doc.get("apiVersion", "")
        name = f"{where}: {kind}/{doc.get('metadata', {}).get('name')}"
        self.checked["objects"][kind] = self.checked["objects"].get(kind, 0) + 1
        schema = self.crd_schema(api, kind)
        if schema is not None:
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc),
                            key=lambda e: list(e.path))
            for e in errors[:5]:
                self.problem(name, f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}")
        else:
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path) or "(root)"
                    self.problem(name, f"Kubernetes {version}: {path}: {e.message}")
                    break
                except kubernetes_validate.SchemaNotFoundError as e:
                    self.problem(name, f"no schema: {e.message}")
                    break
        if kind == "Experiment":
            trial = doc.get("spec", {}).get("trialTemplate", {}).get("trialSpec")
            if trial:
                self.validate(f"{name} trialSpec", trial)

    def crd_schema(self, api, kind):
        if "/" not in api or "." not in api.split("/")[0] or api.split("/")[0].endswith("k8s.io"):
            return None
        group, version = api.split("/")
        key = f"{group}_{version}_{kind}"
        if key not in self.schemas:
            path = os.path.join(self.k8s, "schemas", key + ".json.gz")
            if not os.path.exists(path):
                self.problem(f"{api} {kind}", "no schema for this custom resource in schemas/")
                self.schemas[key] = {}
            else:
                with gzip.open(path) as f:
                    self.schemas[key] = strict(json.load(f))
        return self.schemas[key]

    # --- mlengine's own flags, ports and images ----------------------------------------------

    def help(self, sub):
        if sub not in self.helps:
            out = subprocess.run([self.args.mlengine, sub, "--help"], capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"mlengine {sub} --help failed: {out.stderr}")
            text = out.stdout
            self.helps[sub] = (set(re.findall(r"(--[a-z0-9][a-z0-9-]*)", text)),
                               set(re.findall(r"\[env: ([A-Z0-9_]+)=", text)))
        return self.helps[sub]

    def containers(self, where, doc):
        kind, spec = doc.get("kind"), doc.get("spec", {})
        name = f"{where}: {kind}/{doc.get('metadata', {}).get('name')}"
        pods = []
        if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            pods.append((name, spec.get("template", {}).get("spec", {}), False))
        elif kind == "MPIJob":
            for role, replica in spec.get("mpiReplicaSpecs", {}).items():
                pods.append((f"{name} {role}", replica.get("template", {}).get("spec", {}), True))
        elif kind == "Experiment":
            trial = spec.get("trialTemplate", {}).get("trialSpec", {})
            collector = spec.get("metricsCollectorSpec", {}).get("collector", {}).get("kind")
            pods.append((f"{name} trial", trial.get("spec", {}).get("template", {}).get("spec", {}),
                         collector in ("StdOut", "File", None)))
        elif kind == "ClusterServingRuntime":
            pods.append((name, {"containers": spec.get("containers", [])}, False))
            self.runtime_ports(name, spec)
        for label, pod, needs_shell in pods:
            for c in pod.get("containers", []):
                self.container(f"{label} container {c.get('name')}", pod, c, needs_shell)

    def container(self, where, pod, c, needs_shell):
        image = c.get("image", "")
        if not image.startswith("mlengine"):
            return
        self.checked["containers"] += 1
        if image not in IMAGES:
            self.problem(where, f"image {image} is none of the Dockerfile's: {sorted(IMAGES)}")
        self.hardening(where, pod, c)
        if needs_shell and image not in SHELL_IMAGES:
            self.problem(where, f"needs a shell and OpenMPI (Katib wraps the command in sh, the "
                                f"MPI Operator runs sshd): use {sorted(SHELL_IMAGES)}, not {image}")
        argv = list(c.get("command", [])) + list(c.get("args", []))
        if not c.get("command"):
            argv = ["mlengine"] + argv  # the image's entrypoint
        at = next((i for i, a in enumerate(argv) if os.path.basename(a) == "mlengine"), None)
        if at is None:
            return  # e.g. the MPI workers' sshd
        if at + 1 >= len(argv) or argv[at + 1] not in SUBCOMMANDS:
            self.problem(where, f"runs mlengine without a known command: {argv[at:]}")
            return
        sub, flags = argv[at + 1], argv[at + 2:]
        known, envs = self.help(sub)
        values = {}
        for token in flags:
            if token.startswith("--"):
                flag, _, value = token.partition("=")
                if flag not in known:
                    self.problem(where, f"mlengine {sub} has no flag {flag}")
                values[flag] = value
        for env in c.get("env", []):
            var = env.get("name", "")
            if var.startswith("MLENGINE_") and var not in envs and var != "MLENGINE_LOG":
                self.problem(where, f"mlengine {sub} reads no variable {var}")
        if sub == "serve":
            self.serve_ports(where, pod, c, values)

    def hardening(self, where, pod, c):
        own = c.get("securityContext") or {}
        shared = pod.get("securityContext") or {}

        def effective(key):
            return own.get(key, shared.get(key))

        if effective("runAsNonRoot") is not True:
            self.problem(where, "securityContext: runAsNonRoot is not true")
        if own.get("allowPrivilegeEscalation") is not False:
            self.problem(where, "securityContext: allowPrivilegeEscalation is not false")
        if "ALL" not in ((own.get("capabilities") or {}).get("drop") or []):
            self.problem(where, "securityContext: capabilities do not drop ALL")
        if (effective("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            self.problem(where, "securityContext: seccompProfile is not RuntimeDefault")

    def serve_ports(self, where, pod, c, values):
        ports = {}
        for flag, default in DEFAULT_PORTS.items():
            try:
                ports[flag] = int(values.get(flag) or default)
            except ValueError:
                self.problem(where, f"{flag}={values[flag]} is not a port number")
                return
        named = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
        for p in c.get("ports", []):
            if p.get("containerPort") not in ports.values():
                self.problem(where, f"declares port {p.get('containerPort')} but listens on "
                                    f"{sorted(ports.values())}")
        if "http" in named and named["http"] != ports["--rest-port"]:
            self.problem(where, f"port http is {named['http']}, --rest-port {ports['--rest-port']}")
        if "grpc" in named and named["grpc"] != ports["--grpc-port"]:
            self.problem(where, f"port grpc is {named['grpc']}, --grpc-port {ports['--grpc-port']}")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = c.get(probe, {}).get("httpGet")
            if not get:
                continue
            port = named.get(get["port"], get["port"])
            if port != ports["--rest-port"]:
                self.problem(where, f"{probe} asks port {get['port']}, REST is on "
                                    f"{ports['--rest-port']}")
            if not get.get("path", "").startswith("/v2/health/"):
                self.problem(where, f"{probe} asks {get.get('path')}, not /v2/health/live|ready")
            tls = "--tls-cert" in values
            if tls != (get.get("scheme") == "HTTPS"):
                self.problem(where, f"{probe} scheme {get.get('scheme', 'HTTP')} but TLS is "
                                    f"{'on' if tls else 'off'}")
        # Kubernetes' default grace is 30 s, which is also the server's default drain.
        grace = int(values.get("--shutdown-grace-seconds") or DEFAULT_GRACE)
        period = pod.get("terminationGracePeriodSeconds", 30)
        if period <= grace:
            self.problem(where, f"terminationGracePeriodSeconds {period} is not longer than "
                                f"--shutdown-grace-seconds {grace}")
        self.serve_ports_seen.append(ports)

    def runtime_ports(self, name, spec):
        for c in spec.get("containers", []):
            args = dict(a.partition("=")[::2] for a in c.get("args", []) if a.startswith("--"))
            if args.get("--model-base-path") != "/mnt/models":
                self.problem(name, "the runtime must serve /mnt/models (KServe's storage "
                                   "initializer downloads the storageUri there)")
            if int(args.get("--rest-port") or 8080) != 8080:
                self.problem(name, "KServe sends HTTP to container port 8080: --rest-port=8080")
            self.runtime_grpc = int(args.get("--grpc-port") or 8500)

    def services(self, where, docs):
        # A Service's target ports are the serving pods' named ports.
        pods = [d for _, d in docs if d.get("kind") == "Deployment"]
        names = {p.get("name") for d in pods for c in d["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        for _, d in docs:
            if d.get("kind") != "Service":
                continue
            for p in d["spec"].get("ports", []):
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in names:
                    self.problem(f"{where}: Service/{d['metadata']['name']}",
                                 f"targetPort {p['targetPort']} names no container port")
                if p.get("name") == "grpc" and p.get("appProtocol") != "grpc":
                    self.problem(f"{where}: Service/{d['metadata']['name']}",
                                 "the grpc port needs appProtocol: grpc")

    def inference_services(self, docs):
        for where, d in docs:
            if d.get("kind") != "InferenceService":
                continue
            model = d["spec"]["predictor"].get("model", {})
            for p in model.get("ports", []):
                if p.get("name") == "h2c" and p.get("containerPort") != self.runtime_grpc:
                    self.problem(f"{where}: InferenceService/{d['metadata']['name']}",
                                 f"h2c port {p.get('containerPort')} is not the runtime's "
                                 f"--grpc-port {self.runtime_grpc}")

    def hadolint(self):
        dockerfile = os.path.join(self.args.root, "image", "Dockerfile")
        config = os.path.join(self.args.root, "image", "hadolint.yaml")
        out = subprocess.run([self.args.hadolint, "--no-color", "--config", config, dockerfile],
                             capture_output=True, text=True)
        if out.returncode != 0:
            self.problem("image/Dockerfile", "hadolint: " + out.stdout.strip().replace("\n", "; "))

    def run(self):
        self.parse_all()
        docs = self.rendered()
        for where, d in docs:
            self.validate(where, d)
            self.containers(where, d)
        by_render = {}
        for where, d in docs:
            by_render.setdefault(where, []).append((where, d))
        for where, group in by_render.items():
            self.services(where, group)
        self.inference_services(docs)
        self.hadolint()
        self.checked["serve_containers"] = len(self.serve_ports_seen)
        print(json.dumps({"checked": self.checked, "problems": self.problems}, indent=1))
        return 1 if self.problems else 0


def strict(node):
    """Unknown fields become errors, as `kubectl apply --validate=strict` makes them."""
    if isinstance(node, dict):
        node = {k: strict(v) for k, v in node.items()}
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--mlengine", required=True)
    parser.add_argument("--kustomize", required=True)
    parser.add_argument("--hadolint", required=True)
    sys.exit(Checker(parser.parse_args()).run())


if __name__ == "__main__":
    main()
