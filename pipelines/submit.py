"""Upload the compiled pipeline as a new version and start a run of that version.

    python pipelines/submit.py --host URL [--package build/mer_pipeline.yaml] [--pipeline-name mer-training]
        [--version-name NAME] [--experiment mer] [--run-name NAME] [--param k=v]... [--namespace NS]
        [--token-env VAR | --token-file PATH] [--no-run]

Runs start from an uploaded, reviewable pipeline *version* (not an inline package), so every run
in the UI links to the exact package it ran. Parameters are checked against the package's
inputs, and the backend's version (``healthz``) against the oldest KFP backend the package runs on
(2.14), before anything is uploaded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make the `pipelines` package importable
    sys.path.insert(0, str(REPO))

from pipelines._client import (  # noqa: E402
    DEFAULT_EXPERIMENT,
    DEFAULT_PACKAGE,
    DEFAULT_PIPELINE,
    SubmitError,
    add_backend_check_arg,
    add_connection_args,
    api_error,
    check_backend,
    latest_version,
    load_package,
    make_client,
    parse_params,
    read_token,
)


@dataclass(frozen=True)
class Submitted:
    """What :func:`submit` created."""

    pipeline_id: str
    version_id: str
    version_name: str
    experiment_id: str | None
    run_id: str | None


def default_version_name(pipeline_name: str, package: str | Path) -> str:
    """``<pipeline>-<UTC time>-<package hash>``: unique per upload and traceable to the file."""
    digest = hashlib.sha256(Path(package).read_bytes()).hexdigest()[:8]
    return f"{pipeline_name}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}-{digest}"


def upload_version(client: Any, package: str | Path, pipeline_name: str, version_name: str,
                   namespace: str | None = None, description: str | None = None) -> tuple[str, str, str]:
    """Upload ``package`` as a new version of ``pipeline_name``, creating the pipeline if absent.

    Returns:
        ``(pipeline_id, version_id, version_name)``. A newly created pipeline's first version is
        the one the server makes on upload (KFP names it after the pipeline).
    """
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(package), pipeline_name=pipeline_name, description=description,
                                          namespace=namespace)
        first = latest_version(client, pipeline.pipeline_id)
        return pipeline.pipeline_id, first.pipeline_version_id, first.display_name
    version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline_id,
                                             description=description)
    return pipeline_id, version.pipeline_version_id, version_name


def submit(client: Any, package: str | Path = DEFAULT_PACKAGE, *, pipeline_name: str = DEFAULT_PIPELINE,
           version_name: str | None = None, experiment: str = DEFAULT_EXPERIMENT, run_name: str | None = None,
           params: list[str] | None = None, namespace: str | None = None, service_account: str | None = None,
           pipeline_root: str | None = None, start_run: bool = True) -> Submitted:
    """Validate the parameters, upload the package as a new version and (optionally) start a run.

    Args:
        client: a ``kfp.Client``.
        package: compiled pipeline YAML.
        pipeline_name: pipeline to add the version to (created if absent).
        version_name: version display name (default: time + package hash).
        experiment: experiment of the run (created if absent).
        run_name: run display name (default: version name).
        params: ``NAME=VALUE`` pipeline arguments.
        namespace: Kubeflow profile namespace.
        service_account: Kubernetes service account of the run's pods (Workload Identity binding).
        pipeline_root: override of the compiled pipeline root (e.g. ``gs://bucket/kfp``).
        start_run: False uploads only.

    Returns:
        The ids created.

    Raises:
        SubmitError: bad package or parameters (nothing was uploaded).
    """
    spec = load_package(package)
    arguments = parse_params(params or [], spec)
    version_name = version_name or default_version_name(pipeline_name, package)
    pipeline_id, version_id, version_name = upload_version(client, package, pipeline_name, version_name, namespace)
    if not start_run:
        return Submitted(pipeline_id, version_id, version_name, None, None)
    exp = client.create_experiment(experiment, namespace=namespace)
    run = client.run_pipeline(exp.experiment_id, run_name or version_name, params=arguments,
                              pipeline_id=pipeline_id, version_id=version_id, pipeline_root=pipeline_root,
                              service_account=service_account)
    return Submitted(pipeline_id, version_id, version_name, exp.experiment_id, run.run_id)


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags of submit.py."""
    p = argparse.ArgumentParser(description="Upload the compiled MER pipeline as a new version and run it.")
    add_connection_args(p)
    p.add_argument("--package", default=DEFAULT_PACKAGE, help=f"compiled pipeline (default {DEFAULT_PACKAGE})")
    p.add_argument("--pipeline-name", default=DEFAULT_PIPELINE, help=f"pipeline name (default {DEFAULT_PIPELINE})")
    p.add_argument("--version-name", help="version name (default: <pipeline>-<UTC time>-<package hash>)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"experiment (default {DEFAULT_EXPERIMENT})")
    p.add_argument("--run-name", help="run name (default: the version name)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="pipeline argument, YAML-typed (repeatable)")
    p.add_argument("--service-account", help="Kubernetes service account for the run's pods")
    p.add_argument("--pipeline-root", help="override the pipeline root, e.g. gs://bucket/kfp-root")
    p.add_argument("--no-run", action="store_true", help="upload the version only")
    add_backend_check_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse flags, submit, print the ids."""
    args = build_parser().parse_args(argv)
    try:
        parse_params(args.param, load_package(args.package))  # fail on bad input before connecting
        token = read_token(args.token_env, args.token_file)
        client = make_client(args.host, args.namespace, token)
        if not args.skip_backend_check:
            check_backend(client)  # an older backend would fail mid-run or ignore the GPU request
        done = submit(client, args.package, pipeline_name=args.pipeline_name, version_name=args.version_name,
                      experiment=args.experiment, run_name=args.run_name, params=args.param,
                      namespace=args.namespace, service_account=args.service_account,
                      pipeline_root=args.pipeline_root, start_run=not args.no_run)
    except Exception as exc:
        message = str(exc) if isinstance(exc, SubmitError) else api_error(exc)
        if message is None:
            raise
        print(f"submit.py: error: {message}", file=sys.stderr)
        return 2
    print(f"pipeline {args.pipeline_name} ({done.pipeline_id}) version {done.version_name} ({done.version_id})")
    if done.run_id:
        print(f"run {done.run_id} in experiment {args.experiment} ({done.experiment_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
