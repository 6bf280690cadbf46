"""A KServe ``InferenceService`` that runs ``mer serve`` for a model, created or updated through the
Kubernetes API (the ``kubernetes`` client, a dependency of kfp: the deploy step needs no extra).

The predictor is a custom container (``kserve-container``) running ``mer serve --model <registry
model> --version N``: it loads a pinned registry version, so every rollout is an explicit new
revision. On an update ``canaryTrafficPercent`` routes that share of the traffic to the new revision
and the rest to the last rolled-out one (100 = all at once); a first deployment takes all traffic.

Credentials: in a pod the service account's (``KUBERNETES_SERVICE_HOST`` is set), elsewhere the
kubeconfig (``KUBECONFIG`` or ``~/.kube/config``). Nothing is stored or logged.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
#: The container name KServe expects for a custom predictor.
CONTAINER = "kserve-container"
PORT = 8080
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {"requests": {"cpu": "1", "memory": "2Gi"},
                                                "limits": {"cpu": "2", "memory": "4Gi"}}
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


class DeployError(RuntimeError):
    """The InferenceService could not be written (the message says what to fix)."""


@dataclass(frozen=True)
class ServiceSpec:
    """What to deploy and where.

    Attributes:
        name: InferenceService name (a DNS label).
        namespace: Kubernetes namespace.
        image: container image with ``mer_lib`` and the ``serving`` extra.
        model_uri: model reference for ``mer serve --model`` (a gs:// registry model).
        model_version: registry version to pin ("" = the champion when the pod starts).
        endpoint_name: model name in the endpoint paths (``/v1/models/<endpoint_name>:predict``).
        resources: the container's ``requests``/``limits``.
        canary_traffic_percent: traffic share of a new revision on update (1-100).
        service_account: pod service account (e.g. bound to a Google service account that may read
            the registry bucket, Workload Identity); "" = the namespace default.
        annotations: extra metadata annotations (provenance).
    """

    name: str
    namespace: str
    image: str
    model_uri: str
    model_version: str = ""
    endpoint_name: str = "mer"
    resources: dict[str, dict[str, str]] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    canary_traffic_percent: int = 100
    service_account: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what, value in (("name", self.name), ("namespace", self.namespace)):
            if not (isinstance(value, str) and len(value) <= 63 and _DNS_LABEL.fullmatch(value)):
                raise ValueError(f"serving {what} {value!r}: expected a DNS label (lowercase letters, digits and "
                                 "'-', starting with a letter, at most 63 characters)")
        if not self.image:
            raise ValueError("serving image: empty; give an image with mer_lib and the `serving` extra")
        if not self.model_uri:
            raise ValueError("model URI: empty")
        pct = self.canary_traffic_percent
        if isinstance(pct, bool) or not isinstance(pct, int) or not 1 <= pct <= 100:
            raise ValueError(f"canary_traffic_percent {pct!r}: expected an integer from 1 to 100")
        if not isinstance(self.resources, dict) or set(self.resources) - {"requests", "limits"}:
            raise ValueError(f"serving resources {self.resources!r}: expected {{'requests': {{...}}, "
                             "'limits': {...}}")
        for part, values in self.resources.items():
            if not isinstance(values, dict) or not all(isinstance(v, (str, int)) for v in values.values()):
                raise ValueError(f"serving resources.{part} {values!r}: expected e.g. {{'cpu': '1', 'memory': '2Gi'}}")
        cpu_threads(self.resources)  # a CPU quantity that does not parse fails here, not in the pod


def cpu_threads(resources: dict[str, dict[str, str]]) -> int:
    """Torch threads for the container: its whole CPUs (limit, else request), at least 1.

    torch would otherwise start one thread per core of the node, far more than a pod may use.
    """
    for part in ("limits", "requests"):
        cpu = str(resources.get(part, {}).get("cpu", "")).strip()
        if cpu:
            try:
                cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
            except ValueError as exc:
                raise ValueError(f"serving resources.{part}.cpu {cpu!r}: expected e.g. '2' or '1500m'") from exc
            return max(1, int(cores))
    return 1


def inference_service(spec: ServiceSpec, *, update: bool = False) -> dict[str, Any]:
    """The InferenceService resource sent to the Kubernetes API (``update``: with the canary traffic share)."""
    args = ["--model", spec.model_uri, *(["--version", spec.model_version] if spec.model_version else []),
            "--name", spec.endpoint_name, "--port", str(PORT), "--threads", str(cpu_threads(spec.resources))]
    container = {
        "name": CONTAINER, "image": spec.image, "command": ["mer", "serve"], "args": args,
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "resources": {k: {r: str(v) for r, v in vals.items()} for k, vals in spec.resources.items()},
        # Ready only once the model is loaded: the server listens after loading and answers this then.
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{spec.endpoint_name}", "port": PORT},
                           "periodSeconds": 5, "failureThreshold": 3},
    }
    predictor: dict[str, Any] = {"containers": [container]}
    if spec.service_account:
        predictor["serviceAccountName"] = spec.service_account
    if update:
        predictor["canaryTrafficPercent"] = spec.canary_traffic_percent
    annotations = {"mer-lib/model-uri": spec.model_uri, "mer-lib/model-version": spec.model_version,
                   **spec.annotations}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
            "metadata": {"name": spec.name, "namespace": spec.namespace,
                         "labels": {"app.kubernetes.io/name": "mer", "app.kubernetes.io/managed-by": "mer-lib"},
                         "annotations": annotations},
            "spec": {"predictor": predictor}}


def _kubeconfig(path: str | None) -> str | None:
    # The client reads $KUBECONFIG once, when it is imported; read it now so a later setting counts.
    return path or os.environ.get("KUBECONFIG") or None


def kube_client(kubeconfig: str | None = None) -> Any:
    """A Kubernetes ``ApiClient``: the pod's service account in a cluster, else the kubeconfig."""
    from kubernetes import client, config  # heavy: only the deploy step talks to Kubernetes

    cfg = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)
    else:
        try:
            config.load_kube_config(config_file=_kubeconfig(kubeconfig), client_configuration=cfg)
        except config.ConfigException as exc:
            raise DeployError(f"no Kubernetes credentials: not in a pod and no usable kubeconfig ({exc})") from exc
    return client.ApiClient(cfg)


def default_namespace(kubeconfig: str | None = None) -> str:
    """The pod's own namespace, else the kubeconfig context's, else ``default``."""
    if kubeconfig is None and SA_NAMESPACE_FILE.exists():
        return SA_NAMESPACE_FILE.read_text().strip()
    from kubernetes import config  # heavy: only the deploy step talks to Kubernetes

    try:
        _, current = config.list_kube_config_contexts(config_file=_kubeconfig(kubeconfig))
    except config.ConfigException:
        return "default"
    return str((current or {}).get("context", {}).get("namespace") or "default")


def _explain(exc: Any, action: str, spec: ServiceSpec) -> DeployError:
    where = f"InferenceService {spec.namespace}/{spec.name}"
    if exc.status in (401, 403):
        return DeployError(f"{action} {where}: {exc.status} {exc.reason}; the pipeline's service account needs RBAC "
                           f"get/create/patch on inferenceservices.{GROUP} in namespace {spec.namespace}")
    if exc.status == 404:
        return DeployError(f"{action} {where}: 404; the InferenceService resource ({GROUP}/{VERSION}) is unknown "
                           "to the cluster: is KServe installed?")
    body = (exc.body or b"").decode() if isinstance(exc.body, bytes) else str(exc.body or "")
    return DeployError(f"{action} {where}: {exc.status} {exc.reason} {body[:500]}")


def apply_inference_service(spec: ServiceSpec, api_client: Any = None) -> dict[str, Any]:
    """Create the InferenceService, or update it (a new revision with the canary traffic share).

    Args:
        spec: what to deploy.
        api_client: a ``kubernetes.client.ApiClient`` (default: :func:`kube_client`).

    Returns:
        ``{"action": "created"|"updated", "name", "namespace", "generation", "manifest"}``
        (``manifest``: the resource sent; the key keeps its name for readers of earlier deployment records).

    Raises:
        DeployError: the API refused (RBAC, KServe not installed, invalid spec ...).
    """
    from kubernetes.client import CustomObjectsApi  # heavy: only the deploy step talks to Kubernetes
    from kubernetes.client.exceptions import ApiException  # heavy: only the deploy step talks to Kubernetes

    api = CustomObjectsApi(api_client or kube_client())
    where = (GROUP, VERSION, spec.namespace, PLURAL)
    try:
        api.get_namespaced_custom_object(*where, spec.name)
        exists = True
    except ApiException as exc:
        if exc.status != 404:
            raise _explain(exc, "read", spec) from exc
        exists = False
    resource = inference_service(spec, update=exists)
    try:
        if exists:
            # A merge patch: our metadata and predictor replace theirs, fields we do not set stay.
            out = api.patch_namespaced_custom_object(*where, spec.name, resource)
        else:
            out = api.create_namespaced_custom_object(*where, resource)
    except ApiException as exc:
        raise _explain(exc, "update" if exists else "create", spec) from exc
    action = "updated" if exists else "created"
    log.info("%s InferenceService %s/%s: %s v%s on %s", action, spec.namespace, spec.name, spec.model_uri,
             spec.model_version or "champion", spec.image)
    return {"action": action, "name": spec.name, "namespace": spec.namespace,
            "generation": (out or {}).get("metadata", {}).get("generation"), "manifest": resource}
