"""The Helm chart: lint, render every CI value set, validate every manifest against the Kubernetes schemas
(offline, kubernetes-validate), refuse bad values through values.schema.json, and check what each value set
must produce (GPU workers on GPU nodes, a RayService under KubeRay, an external Redis URL, Triton)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.chart.conftest import CHART, CI_VALUES, KIND_VALUES, RELEASE, find, one, pod_spec, render, run_helm

VALUE_SETS = [p.name.removesuffix("-values.yaml") for p in CI_VALUES]
LINTED = [*CI_VALUES, KIND_VALUES]
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion: native gRPC probes) and the newest schema.
K8S_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
FULL = f"{RELEASE}-iznet"


def test_the_ci_value_sets_cover_every_deployment_mode():
    assert {"default", "gpu", "kuberay", "external-redis", "triton"} <= set(VALUE_SETS)


@pytest.mark.parametrize("values", LINTED, ids=[*VALUE_SETS, "kind"])
def test_helm_lint_strict(helm, values):
    proc = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", [*VALUE_SETS, "kind"])
def test_every_manifest_is_valid_kubernetes(rendered, name, version):
    docs = rendered[name]
    assert len(docs) >= 10
    crds = []
    for doc in docs:
        if doc["apiVersion"] in CRD_SCHEMAS:
            crds.append(doc)
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']} is invalid for Kubernetes {version}: "
                        f"{exc.message} at {'/'.join(map(str, exc.path))}")
    for doc in crds:  # KubeRay and KEDA resources: the fields their operators require
        jsonschema.validate(doc, CRD_SCHEMAS[doc["apiVersion"]][doc["kind"]])


def test_each_value_set_renders_what_it_promises(rendered):
    kinds = {name: sorted({(d["kind"], d["metadata"]["name"]) for d in docs}) for name, docs in rendered.items()}
    default = set(kinds["default"])
    for comp in ("detection", "embedding", "gallery"):
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler"):
            assert (kind, f"{FULL}-{comp}") in default
    assert {("Deployment", f"{FULL}-gateway"), ("Service", f"{FULL}-gateway"),
            ("HorizontalPodAutoscaler", f"{FULL}-gateway"), ("Deployment", f"{FULL}-worker-cpu"),
            ("StatefulSet", f"{FULL}-redis"), ("PersistentVolumeClaim", f"{FULL}-store"),
            ("NetworkPolicy", FULL), ("Secret", f"{FULL}-redis")} <= default
    assert not any(k in {"RayService", "ScaledObject"} for k, _ in default)
    assert ("Deployment", f"{FULL}-worker-gpu") not in default
    # KubeRay: a RayService instead of the gateway Deployment (and no HPA: Ray scales itself).
    kuberay = set(kinds["kuberay"])
    assert ("RayService", f"{FULL}-gateway") in kuberay
    assert ("Deployment", f"{FULL}-gateway") not in kuberay
    assert ("HorizontalPodAutoscaler", f"{FULL}-gateway") not in kuberay
    # External Redis: no StatefulSet, no generated password, an existing claim for the store.
    ext = set(kinds["external-redis"])
    assert not any(k == "StatefulSet" for k, _ in ext)
    assert ("Secret", f"{FULL}-redis") not in ext
    assert not any(k == "PersistentVolumeClaim" for k, _ in ext)
    # Triton on.
    assert ("Deployment", f"{FULL}-triton") in set(kinds["triton"])


def test_gpu_workers_request_gpus_on_gpu_nodes_with_the_cuda_image(rendered):
    docs = rendered["gpu"]
    gpu = one(docs, "Deployment", f"{FULL}-worker-gpu")
    spec = pod_spec(gpu)
    c = spec["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert c["image"].endswith(":0.1.0-gpu")
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert "--queues=gpu" in c["args"]
    assert "replicas" not in gpu["spec"]  # KEDA owns the replica count
    cpu = pod_spec(one(docs, "Deployment", f"{FULL}-worker-cpu"))["containers"][0]
    assert "nvidia.com/gpu" not in json.dumps(cpu["resources"]) and not cpu["image"].endswith("-gpu")
    # KEDA scales each worker on the length of its Redis list (Celery's queue), authenticated by the password.
    scaled = one(docs, "ScaledObject", f"{FULL}-worker-gpu")
    trig = scaled["spec"]["triggers"][0]
    assert trig["type"] == "redis" and trig["metadata"]["listName"] == "gpu"
    assert trig["metadata"]["address"] == f"{FULL}-redis:6379"
    assert scaled["spec"]["minReplicaCount"] == 0
    auth = one(docs, "TriggerAuthentication", trig["authenticationRef"]["name"])
    assert auth["spec"]["secretTargetRef"][0]["name"] == f"{FULL}-redis"


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_redis_url_internal_and_external(rendered):
    c = pod_spec(one(rendered["default"], "Deployment", f"{FULL}-worker-cpu"))["containers"][0]
    env = _env(c)
    assert env["IZNET_REDIS_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{FULL}-redis:6379/0"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULL}-redis", "key": "redis-password"}
    # $(REDIS_PASSWORD) is expanded by Kubernetes only when it is defined before IZNET_REDIS_URL.
    names = [e["name"] for e in c["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("IZNET_REDIS_URL")
    ext = _env(pod_spec(one(rendered["external-redis"], "Deployment", f"{FULL}-worker-cpu"))["containers"][0])
    assert ext["IZNET_REDIS_URL"]["value"] == "rediss://:$(REDIS_PASSWORD)@redis.example.internal:6380/2"
    assert ext["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "managed-redis", "key": "password"}
    trig = one(rendered["external-redis"], "ScaledObject", f"{FULL}-worker-cpu")["spec"]["triggers"][0]
    assert trig["metadata"]["address"] == "redis.example.internal:6380" and trig["metadata"]["enableTLS"] == "true"


def test_triton_reads_the_model_repository_from_the_store(rendered):
    docs = rendered["triton"]
    t = pod_spec(one(docs, "Deployment", f"{FULL}-triton"))
    c = t["containers"][0]
    assert c["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert "--model-repository=/var/lib/iznet/triton" in c["args"]
    assert {"name": "store", "mountPath": "/var/lib/iznet", "readOnly": True} in c["volumeMounts"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    emb = _env(pod_spec(one(docs, "Deployment", f"{FULL}-embedding"))["containers"][0])
    assert emb["IZNET_TRITON_URL"]["value"] == f"{FULL}-triton:8001"
    assert emb["IZNET_TRITON_MODEL"]["value"] == "iznet_embedder"
    assert emb["IZNET_EMBEDDING_BACKEND"]["value"] == "triton"
    assert one(docs, "Service", f"{FULL}-triton")


def test_api_keys_come_from_a_secret_and_never_from_plain_values(rendered):
    docs = rendered["gpu"]  # the value set with keys
    secret = one(docs, "Secret", f"{FULL}-api-keys")
    env = _env(pod_spec(one(docs, "Deployment", f"{FULL}-gateway"))["containers"][0])
    assert env["IZNET_GATEWAY_API_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"],
                                                                  "key": "api-keys"}
    assert "ci-key-0123456789abcdef" not in yaml.safe_dump([d for d in docs if d["kind"] != "Secret"])
    assert "IZNET_GATEWAY_API_KEYS" not in _env(pod_spec(one(rendered["default"], "Deployment",
                                                     f"{FULL}-gateway"))["containers"][0])


def test_every_service_takes_keys_from_secrets_and_the_gateway_sends_the_service_token(rendered):
    """The gallery, detection and embedding services check keys too (services/common.py Keys): the generated
    service token is their read-only key and what the gateway sends; the API keys are their write keys."""
    for name, docs in rendered.items():
        token = one(docs, "Secret", f"{FULL}-service-token")
        assert token["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"  # kept across upgrades
        ref = {"name": f"{FULL}-service-token", "key": "service-token"}
        for svc in ("detection", "embedding", "gallery"):
            env = _env(pod_spec(one(docs, "Deployment", f"{FULL}-{svc}"))["containers"][0])
            assert env["IZNET_READ_KEYS"]["valueFrom"]["secretKeyRef"] == ref, (name, svc)
            if name == "gpu":  # the value set with API keys: they are the services' write keys
                assert env["IZNET_API_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": f"{FULL}-api-keys",
                                                                              "key": "api-keys"}
            else:
                assert "IZNET_API_KEYS" not in env, (name, svc)
        gateways = [pod_spec(d)["containers"][0] for d in find(docs, "Deployment", f"{FULL}-gateway")]
        for rs in find(docs, "RayService"):
            cluster = rs["spec"]["rayClusterConfig"]
            gateways += [g["template"]["spec"]["containers"][0] for g in
                         [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]]
        assert gateways, name
        for c in gateways:
            assert _env(c)["IZNET_SERVICE_TOKEN"]["valueFrom"]["secretKeyRef"] == ref, name
        token_value = next(iter(token["data"].values()))
        assert token_value not in yaml.safe_dump([d for d in docs if d["kind"] != "Secret"])


def test_pods_run_as_non_root_with_a_read_only_root(rendered):
    for name, docs in rendered.items():
        for d in docs:
            if d["kind"] not in {"Deployment", "StatefulSet"}:
                continue
            spec = pod_spec(d)
            assert spec["securityContext"]["runAsNonRoot"] is True, (name, d["metadata"]["name"])
            for c in spec["containers"]:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_network_policy_keeps_services_inside_and_opens_the_gateway(rendered):
    docs = rendered["default"]
    inner = one(docs, "NetworkPolicy", FULL)
    assert inner["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "iznet",
                                                           "app.kubernetes.io/instance": RELEASE}
    assert inner["spec"]["ingress"][0]["from"][0]["podSelector"] == inner["spec"]["podSelector"]
    gw = one(docs, "NetworkPolicy", f"{FULL}-gateway")
    assert gw["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 50050}]}]
    restricted, operator = one(rendered["kuberay"], "NetworkPolicy", f"{FULL}-gateway")["spec"]["ingress"]
    assert restricted["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "clients"}
    assert {p["port"] for p in operator["ports"]} == {8265, 52365}  # KubeRay's operator reads Serve's state


def test_scaling_switches(helm):
    docs = render(helm, "--set", "detection.autoscaling.enabled=false", "--set", "detection.replicaCount=3")
    assert one(docs, "Deployment", f"{FULL}-detection")["spec"]["replicas"] == 3
    assert not find(docs, "HorizontalPodAutoscaler", f"{FULL}-detection")
    hpa = one(docs, "HorizontalPodAutoscaler", f"{FULL}-embedding")
    assert "replicas" not in one(docs, "Deployment", f"{FULL}-embedding")["spec"]  # the HPA owns it
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{FULL}-embedding"


# ------------------------------------------------------------------------------------ bad values refused

BAD_VALUES = [
    (["--set", "detection.workers=0"], "/detection/workers"),
    (["--set", "detecton.workers=2"], "detecton"),  # a typo of a key
    (["--set", "gateway.service.type=Ingress"], "/gateway/service/type"),
    (["--set", "embedding.service.port=70000"], "/embedding/service/port"),
    (["--set", "redis.enabled=false"], "/externalRedis/host"),  # external Redis without a host
    (["--set", "workers.cpu.queues={video}"], "/workers/cpu/queues/0"),
    (["--set", "workers.gpu.gpus=-1"], "/workers/gpu/gpus"),
    (["--set", "store.persistence.size=lots"], "/store/persistence/size"),
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
    (["--set", "redis.auth.password=p@ss/word"], "/redis/auth/password"),  # would break the redis:// URL
    (["--set", "apiKeys.keys={short}"], "/apiKeys/keys/0"),
    (["--set", "gateway.kuberay.numReplicas=many"], "/gateway/kuberay/numReplicas"),
    (["--set", "detection.autoscaling.targetCPU=150"], "/detection/autoscaling/targetCPU"),
    (["--set-json", 'workers={"Bad_Name":{"enabled":true,"queues":["cpu"]}}'], "Bad_Name"),
]


@pytest.mark.parametrize("args,where", BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_bad_values_are_refused(helm, args, where):
    proc = run_helm(helm, "template", RELEASE, str(CHART), *args, check=False)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert "schema" in proc.stderr.lower() or "at '" in proc.stderr, proc.stderr
    assert where in proc.stderr, proc.stderr


def test_schema_accepts_every_ci_value_set():
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    for p in LINTED:
        merged = _merge(defaults, yaml.safe_load(p.read_text()) or {})
        jsonschema.Draft7Validator(schema).validate(merged)


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return out


# ------------------------------------------------------------------------------------ every value documented


def _leaves(d, prefix=""):
    if isinstance(d, dict) and d:
        for k, v in d.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


def test_every_value_is_documented():
    text = (CHART / "values.yaml").read_text()
    params = dict(re.findall(r"^\s*## @param (\S+) (.+)$", text, re.M))
    values = yaml.safe_load(text)
    leaves = list(_leaves(values))
    undocumented = [leaf for leaf in leaves
                    if not any(leaf == p or leaf.startswith(p + ".") for p in params)]
    assert not undocumented, f"values.yaml entries without a '## @param' comment: {undocumented}"
    missing = [p for p in params if not any(leaf == p or leaf.startswith(p + ".") for leaf in leaves)]
    assert not missing, f"'## @param' comments for values that do not exist: {missing}"
    terse = [p for p, desc in params.items() if len(desc.split()) < 2]
    assert not terse, f"'## @param' comments that explain nothing: {terse}"


def test_notes_tell_how_to_label_a_photo(helm):
    proc = run_helm(helm, "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", "faces")
    assert f"port-forward svc/{FULL}-gateway 50050:50050" in proc.stdout
    assert "iznet label --server" in proc.stdout
    assert "no API keys are set" in proc.stdout


# ------------------------------------------------------------------- the custom resources (KubeRay, KEDA)

_OBJ = {"type": "object"}
CRD_SCHEMAS = {
    "ray.io/v1": {"RayService": {
        "type": "object", "required": ["spec"], "properties": {"spec": {
            "type": "object", "required": ["serveConfigV2", "rayClusterConfig"], "additionalProperties": False,
            "properties": {
                "serveConfigV2": {"type": "string"},
                "rayClusterConfig": {
                    "type": "object", "required": ["rayVersion", "headGroupSpec", "workerGroupSpecs"],
                    "properties": {
                        "rayVersion": {"type": "string"}, "enableInTreeAutoscaling": {"type": "boolean"},
                        "headGroupSpec": {"type": "object", "required": ["rayStartParams", "template"],
                                          "properties": {"rayStartParams": {"type": "object",
                                                                            "additionalProperties": {"type": "string"}},
                                                         "template": _OBJ}},
                        "workerGroupSpecs": {"type": "array", "items": {
                            "type": "object", "required": ["groupName", "replicas", "minReplicas", "maxReplicas",
                                                           "rayStartParams", "template"]}}}}}}}}},
    "keda.sh/v1alpha1": {
        "ScaledObject": {"type": "object", "required": ["spec"], "properties": {"spec": {
            "type": "object", "required": ["scaleTargetRef", "triggers"], "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"]},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer"}, "cooldownPeriod": {"type": "integer"},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"],
                    "properties": {"metadata": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}},
        "TriggerAuthentication": {"type": "object", "required": ["spec"]},
    },
}


def test_rayservice_pod_templates_are_valid_pod_specs(rendered):
    """The Ray head and worker pod templates inside the RayService are ordinary pod templates: validate them."""
    rs = one(rendered["kuberay"], "RayService", f"{FULL}-gateway")
    cluster = rs["spec"]["rayClusterConfig"]
    for tmpl in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", **tmpl.get("metadata", {})},
               "spec": tmpl["spec"]}
        kubernetes_validate.validate(pod, K8S_VERSIONS[-1], strict=True)
    serve = yaml.safe_load(rs["spec"]["serveConfigV2"])
    assert serve["grpc_options"]["port"] == 50050
