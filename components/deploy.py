"""Deployment of the promoted champion as a KServe InferenceService (optional: ``deploy=true``)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def deploy_model(registration: Input[Artifact], registry_uri: str, serving_image: str, serving_name: str,
                 serving_namespace: str, serving_resources: dict, canary_traffic_percent: int,
                 serving_service_account: str, run_id: str, deployment: Output[Artifact]) -> bool:
    """Create or update the InferenceService serving the version this run promoted (else do nothing).

    Args:
        registration: the registration step's output (``registration.json``).
        registry_uri: the registry the serving pod loads from (must be persistent, e.g. gs://).
        serving_image: image running ``mer serve`` (mer_lib with the ``serving`` extra).
        serving_name: InferenceService name.
        serving_namespace: Kubernetes namespace; "" = the pipeline pod's own.
        serving_resources: ``{"requests": {...}, "limits": {...}}`` of the serving container.
        canary_traffic_percent: traffic share of the new revision when the service exists (1-100).
        serving_service_account: serving pod's service account; "" = the namespace default.
        run_id: the KFP run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        deployment: ``deployment.json`` (what was applied, or why nothing was).

    Returns:
        True when the InferenceService was created or updated.
    """
    import json
    import os

    from mer_lib.pipeline.deploy import deploy_champion

    with open(os.path.join(registration.path, "registration.json")) as fh:
        reg = json.load(fh)
    result = deploy_champion(reg, registry_uri=registry_uri, image=serving_image, name=serving_name,
                             namespace=serving_namespace, resources=serving_resources,
                             canary_traffic_percent=canary_traffic_percent, service_account=serving_service_account,
                             run_id=run_id)
    os.makedirs(deployment.path, exist_ok=True)
    with open(os.path.join(deployment.path, "deployment.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    deployment.metadata.update({k: result[k] for k in ("deployed", "reason", "name", "namespace", "version")
                                if k in result})
    print(result["reason"])
    return bool(result["deployed"])
