"""The pipeline's deploy step: serve the version a registration just promoted on KServe.

Deploys only what this run promoted, and only while it is still the champion (a later run may have
promoted another version in between; deploying that one is that run's job). The service pins the
registry version, so a rollout never changes under a running revision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mer_lib import storage
from mer_lib.registry import open_registry
from mer_lib.serving.deploy import DEFAULT_RESOURCES, ServiceSpec, apply_inference_service, default_namespace


def deploy_champion(registration: Mapping[str, Any], *, registry_uri: str, image: str, name: str,
                    namespace: str = "", resources: Mapping[str, Mapping[str, str]] | None = None,
                    canary_traffic_percent: int = 100, service_account: str = "", run_id: str = "",
                    api_client: Any = None) -> dict[str, Any]:
    """Create or update the InferenceService for a promoted version; skip when nothing was promoted.

    Args:
        registration: the registration step's result (``model_name``, ``version``, ``promoted``, ``reason``).
        registry_uri: the registry the serving pod loads from (a gs:// URI on a cluster).
        image: serving image (``mer_lib`` with the ``serving`` extra).
        name: InferenceService name.
        namespace: Kubernetes namespace ("" = the pod's own, or the kubeconfig context's).
        resources: container ``requests``/``limits`` (None = the defaults of :mod:`mer_lib.serving.deploy`).
        canary_traffic_percent: traffic share of the new revision when the service exists (1-100).
        service_account: serving pod's service account ("" = namespace default).
        run_id: KFP run id, recorded on the service.
        api_client: a ``kubernetes.client.ApiClient`` (default: in-cluster or kubeconfig).

    Returns:
        ``{"deployed": bool, "reason": str, ...}`` plus the apply result when deployed.

    Raises:
        ValueError: no persistent registry, or a bad serving setting.
        DeployError: the Kubernetes API refused.
    """

    model_name, version = str(registration["model_name"]), int(registration["version"])
    if not registry_uri:
        raise ValueError("deploy=true needs registry_uri: the serving pod loads the model from the registry, and "
                         "without one the run registers into its own artifact, which no pod can read")
    if not registration.get("promoted"):
        return {"deployed": False, "reason": f"{model_name} v{version} was not promoted "
                                             f"({registration.get('reason', '')}); the served model is unchanged"}
    champion = open_registry(registry_uri).champion(model_name)
    if champion is None or champion.number != version:
        now = f"v{champion.number}" if champion else "none"
        return {"deployed": False, "reason": f"{model_name} v{version} is no longer the champion (now {now}); "
                                             "the run that promoted it deploys it"}
    spec = ServiceSpec(name=name, namespace=namespace or default_namespace(), image=image,
                       model_uri=storage.join(registry_uri, model_name), model_version=str(version),
                       resources={k: dict(v) for k, v in (resources or DEFAULT_RESOURCES).items()},
                       canary_traffic_percent=int(canary_traffic_percent), service_account=service_account,
                       annotations={"mer-lib/run-id": run_id} if run_id else {})
    result = apply_inference_service(spec, api_client)
    return {"deployed": True, "reason": f"{result['action']} {spec.namespace}/{spec.name} serving {model_name} "
                                        f"v{version}", "model_name": model_name, "version": version, **result}
