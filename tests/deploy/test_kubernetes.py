"""ops/k8s: the kustomize base and the example overlay rendered and validated offline
against Kubernetes' own schemas (kubernetes-validate, strict: unknown fields are
errors). KEDA's ScaledObject and TriggerAuthentication are CRDs it has no schema
for, so their structure and their links to the rest are checked here."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from fence.settings import Settings
from producer.gateway import MAX_WAIT_S
from tests.support import REPO
from workers import readiness
from workers.app import create_app
from workers.liveness import HEARTBEAT_INTERVAL_S, build_parser

BASE = REPO / "ops" / "k8s" / "base"
OVERLAY = REPO / "ops" / "k8s" / "overlays" / "example"
WITHOUT_TLS = REPO / "ops" / "k8s" / "components" / "redis-without-tls"
SECRET_TEMPLATE = REPO / "ops" / "k8s" / "secret.example.yaml"
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "labels", "resources", "images", "namespace"}
KUBERNETES_VERSION = "1.30"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
SCALED_OBJECT_SPEC = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render_in_python(root: Path) -> list[dict[str, Any]]:
    """What ``kustomize build`` does with this base or overlay (resources, which may be
    bases, labels, images, namespace). Used where no kustomize binary is installed;
    compared with one where there is."""
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    assert set(kustomization) <= KUSTOMIZATION_KEYS
    docs = [
        doc
        for resource in kustomization["resources"]
        for doc in (
            render_in_python(root / resource)
            if (root / resource).is_dir()
            else load_all(root / resource)
        )
    ]
    for doc in docs:
        for entry in kustomization.get("labels", []):
            assert not entry.get("includeSelectors") and not entry.get("includeTemplates")
            doc["metadata"].setdefault("labels", {}).update(entry["pairs"])
        if "namespace" in kustomization:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for container in containers(doc):
            for image in kustomization.get("images", []):
                if container["image"].partition(":")[0] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def kustomize(root: Path) -> list[dict[str, Any]] | None:
    """The real ``kubectl kustomize`` output, or None where kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    output = subprocess.run(
        [kubectl, "kustomize", str(root)], capture_output=True, text=True, timeout=60
    )
    assert output.returncode == 0, output.stderr
    return [doc for doc in yaml.safe_load_all(output.stdout) if doc]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])


def by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def rendered(root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    docs = render_in_python(root)
    real = kustomize(root)
    if real is not None:  # the real kustomize (built into kubectl) must agree
        assert by_key(real) == by_key(docs)
    return by_key(docs)


@pytest.fixture(scope="module")
def docs() -> dict[tuple[str, str], dict[str, Any]]:
    return rendered(BASE)


@pytest.fixture(scope="module")
def overlay() -> dict[tuple[str, str], dict[str, Any]]:
    return rendered(OVERLAY)


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_every_core_object_validates_strictly(docs):
    objects = [doc for doc in docs.values() if doc["kind"] not in KEDA_KINDS]
    objects += load_all(SECRET_TEMPLATE)
    kinds = sorted(doc["kind"] for doc in objects)
    assert kinds == sorted(
        ["ConfigMap", "ServiceAccount", "PodDisruptionBudget", "Secret"]
        + ["Deployment"] * 4
        + ["Service"] * 2
    )
    for doc in objects:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_would_catch_a_misspelt_field(docs):
    broken = copy.deepcopy(docs[("Deployment", "fence-worker")])
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 660
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_workers_get_the_longest_turn_to_finish_on_sigterm(docs):
    worker = docs[("Deployment", "fence-worker")]
    config = docs[("ConfigMap", "fence-config")]["data"]
    pod = worker["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert "replicas" not in worker["spec"]  # KEDA owns the replica count
    assert pod["terminationGracePeriodSeconds"] >= float(config["FENCE_TURN_TIMEOUT_S"]) + 30
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["command"] == ["celery", "-A", "workers", "worker"]
    assert "lifecycle" not in container  # SIGTERM itself is Celery's warm shutdown
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert docs[("PodDisruptionBudget", "fence-worker")]["spec"]["maxUnavailable"] == 1


def test_a_worker_that_exits_or_stops_consuming_is_restarted(docs):
    """Restarted when it exits (restartPolicy), and when its heartbeat file goes stale
    (the liveness probe), with the file on a writable volume of the read-only pod."""
    worker = docs[("Deployment", "fence-worker")]["spec"]["template"]["spec"]
    [container] = worker["containers"]
    assert worker["restartPolicy"] == "Always"
    assert "--without-heartbeat" not in container["args"]  # the heartbeat is the signal
    liveness_file = env_of(container)["FENCE_LIVENESS_FILE"]["value"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(liveness_file.startswith(mount + "/") for mount in mounts)
    for name in ("startupProbe", "livenessProbe"):
        probe = container[name]
        command = probe["exec"]["command"]
        assert command[:3] == ["python", "-m", "workers.liveness"]
        max_age = build_parser().parse_args(command[3:]).max_age
        assert max_age > 2 * HEARTBEAT_INTERVAL_S
        assert probe["timeoutSeconds"] < max_age
    assert docs[("Deployment", "fence-beat")]["spec"]["template"]["spec"]["restartPolicy"] == (
        "Always"
    )


def test_a_worker_whose_dependencies_fail_is_not_ready_and_not_restarted(docs):
    """Readiness checks Redis and memory, bounded in time; liveness only the process."""
    worker = docs[("Deployment", "fence-worker")]["spec"]
    [container] = worker["template"]["spec"]["containers"]
    probe = container["readinessProbe"]
    command = probe["exec"]["command"]
    assert command[:3] == ["python", "-m", "workers.readiness"]
    timeout = readiness.build_parser().parse_args(command[3:]).timeout
    assert probe["timeoutSeconds"] > timeout  # the probe answers before the kubelet gives up
    assert probe["periodSeconds"] >= probe["timeoutSeconds"]
    assert "workers.readiness" not in str(container["livenessProbe"])
    assert worker["strategy"]["rollingUpdate"]["maxUnavailable"] == 0  # rollouts wait on it


def test_keda_scales_workers_on_the_celery_queue(docs):
    scaled = docs[("ScaledObject", "fence-worker")]
    auth = docs[("TriggerAuthentication", "fence-redis")]
    assert scaled["apiVersion"] == auth["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert set(spec) <= SCALED_OBJECT_SPEC
    target = spec["scaleTargetRef"]
    assert (target["kind"], target["name"]) in docs
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "redis"
    metadata = trigger["metadata"]
    assert all(isinstance(value, str) for value in metadata.values())  # KEDA wants strings
    assert metadata["listName"] == create_app().conf.task_default_queue == "celery"
    worker_args = docs[("Deployment", "fence-worker")]["spec"]["template"]["spec"]
    concurrency = next(a for a in worker_args["containers"][0]["args"] if "concurrency" in a)
    assert concurrency == f"--concurrency={metadata['listLength']}"
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert metadata["enableTLS"] in {"true", "false"}
    secret = load_all(SECRET_TEMPLATE)[0]
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["parameter"] in {"address", "password", "username", "host", "port"}
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


def test_keda_reaches_the_redis_of_the_secret_as_the_workers_do(docs):
    """TLS on exactly when FENCE_REDIS_URL is rediss://; same host, port and password."""
    secret = load_all(SECRET_TEMPLATE)[0]["stringData"]
    url = urlsplit(secret["FENCE_REDIS_URL"])
    metadata = docs[("ScaledObject", "fence-worker")]["spec"]["triggers"][0]["metadata"]
    assert url.scheme == "rediss" and metadata["enableTLS"] == "true"
    assert secret["REDIS_ADDRESS"] == url.netloc.rpartition("@")[2]  # host:port
    assert secret["REDIS_PASSWORD"] == url.password
    assert metadata["databaseIndex"] == url.path.lstrip("/")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed")
def test_the_component_for_a_redis_without_tls_turns_only_kedas_tls_off(docs, tmp_path):
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(BASE, tmp_path)],
                "components": [os.path.relpath(WITHOUT_TLS, tmp_path)],
            }
        )
    )
    plain = by_key(kustomize(tmp_path) or [])
    expected = copy.deepcopy(docs)
    expected[("ScaledObject", "fence-worker")]["spec"]["triggers"][0]["metadata"]["enableTLS"] = (
        "false"
    )
    assert plain == expected


def test_the_example_overlay_names_the_image_namespace_and_ingress(docs, overlay):
    """The base's image is a placeholder: the overlay replaces it in every container."""
    objects = [doc for doc in overlay.values() if doc["kind"] not in KEDA_KINDS]
    assert sorted(overlay) == sorted([*docs, ("Ingress", "fence-gateway")])
    for doc in objects:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    images = {c["image"] for doc in overlay.values() for c in containers(doc)}
    assert images == {"registry.example.com/fence:0.1.0"}
    assert {doc["metadata"].get("namespace") for doc in overlay.values()} == {"fence"}


def test_the_ingress_serves_the_api_on_tls_only(overlay):
    ingress = overlay[("Ingress", "fence-gateway")]
    spec, annotations = ingress["spec"], ingress["metadata"]["annotations"]
    [tls] = spec["tls"]
    assert tls["secretName"]
    assert {rule["host"] for rule in spec["rules"]} <= set(tls["hosts"])
    assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    service = overlay[("Service", "fence-gateway")]["spec"]
    for rule in spec["rules"]:
        [path] = rule["http"]["paths"]
        assert (path["path"], path["pathType"]) == ("/v1", "Prefix")  # no open /metrics
        backend = path["backend"]["service"]
        assert backend["name"] == "fence-gateway"
        assert backend["port"]["name"] in {port["name"] for port in service["ports"]}
    assert float(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > MAX_WAIT_S
    body = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body.endswith("m") and int(body[:-1]) * 2**20 > Settings().api_max_body_bytes


def test_beat_is_a_single_replica_replaced_not_rolled(docs):
    beat = docs[("Deployment", "fence-beat")]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"] == {"type": "Recreate"}
    assert beat["template"]["spec"]["containers"][0]["command"][:4] == [
        *("celery", "-A", "workers", "beat")
    ]


def test_flower_and_gateway_are_served_with_auth_from_the_secret(docs):
    """Flower reads FLOWER_BASIC_AUTH, the settings check the same key as
    FENCE_FLOWER_BASIC_AUTH (it refuses the template's placeholder)."""
    secret = load_all(SECRET_TEMPLATE)[0]
    flower_env = env_of(
        docs[("Deployment", "fence-flower")]["spec"]["template"]["spec"]["containers"][0]
    )
    assert (
        flower_env["FENCE_FLOWER_BASIC_AUTH"]["valueFrom"]
        == flower_env["FLOWER_BASIC_AUTH"]["valueFrom"]
    )
    for name, variable in (
        ("fence-flower", "FLOWER_BASIC_AUTH"),
        ("fence-gateway", "FENCE_API_TOKENS"),
    ):
        deployment = docs[("Deployment", name)]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        ref = env_of(container)[variable]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
        service = docs[("Service", name)]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["selector"].items() <= labels.items()
        ports = {p["name"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["ports"]} <= ports
        assert container["readinessProbe"]["httpGet"]["port"] in ports


def test_every_reference_resolves_and_every_setting_is_real(docs):
    known = {f"FENCE_{name.upper()}" for name in Settings.model_fields}
    config = docs[("ConfigMap", "fence-config")]
    assert {k for k in config["data"] if k.startswith("FENCE_")} <= known
    secret = load_all(SECRET_TEMPLATE)[0]
    for doc in docs.values():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert ("ServiceAccount", pod["serviceAccountName"]) in docs
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["image"] == "fence:0.1.0"
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in docs
            for name, entry in env_of(container).items():
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secret["stringData"], (doc["metadata"]["name"], name)
                if name.startswith("FENCE_"):
                    assert name in known, name
