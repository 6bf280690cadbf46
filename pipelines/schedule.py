"""Create or update the recurring (retraining) run of an uploaded pipeline version.

    python pipelines/schedule.py --host URL --cron "0 0 2 * * *" [--pipeline-name mer-training]
        [--version-id ID|latest] [--experiment mer] [--job-name mer-retraining] [--param k=v]...
        [--pipeline-root gs://BUCKET/kfp-root] [--namespace NS] [--token-env VAR | --token-file PATH]
        [--disabled] [--skip-backend-check]

KFP cron expressions have **6 fields, seconds first** (robfig/cron): nightly at 02:00 is
``0 0 2 * * *``. A 5-field crontab line would be read with its fields shifted (and on some KFP
versions fires every minute), so it is rejected with the 6-field equivalent. The descriptors KFP's
parser accepts work too: ``@daily``, ``@hourly``, ... and ``@every <Go duration>`` (``@every 12h``,
``@every 1h30m``; counted from the previous run, not the clock).

Times are **UTC**: the scheduled-workflow controller reads cron times in its ``CRON_SCHEDULE_TIMEZONE``,
which the KFP installation sets from ``cronScheduleTimezone`` in the ``pipeline-install-config`` ConfigMap
(default ``UTC``); a cluster admin who changed it changes what ``0 0 2 * * *`` means.

The schedule runs at most one run at a time, does not backfill missed runs, and writes to
``--pipeline-root`` (without it, to the cluster's default artifact store). The backend's version is
checked before anything is created (KFP 2.14 or later, see ``pipelines/_client.py``).

KFP has no update call for recurring runs: an existing schedule of the same name is disabled,
the new one is created, then the old one is deleted (and re-enabled if creation fails).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make the `pipelines` package importable
    sys.path.insert(0, str(REPO))

from pipelines._client import (  # noqa: E402
    DEFAULT_EXPERIMENT,
    DEFAULT_PIPELINE,
    SubmitError,
    add_backend_check_arg,
    add_connection_args,
    api_error,
    check_backend,
    equals_filter,
    latest_version,
    make_client,
    parse_params,
    read_token,
)

DEFAULT_JOB = "mer-retraining"
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# name, low, high, names (index -> value offset), whether '?' is allowed
FIELDS = (
    ("seconds", 0, 59, None, False),
    ("minutes", 0, 59, None, False),
    ("hours", 0, 23, None, False),
    ("day of month", 1, 31, None, True),
    ("month", 1, 12, MONTHS, False),
    ("day of week", 0, 6, DAYS, True),
)
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
#: Shortest ``@every`` interval accepted: the same once-a-minute floor as for 6-field expressions.
MIN_EVERY_S = 60.0
# Go's time.ParseDuration units, in seconds (robfig/cron parses "@every" with it).
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_TERM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_TERM = re.compile(r"^(?P<range>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[0-9]+))?$")


def validate_cron(expr: str) -> str:
    """Check a KFP (robfig/cron) expression: 6 fields, seconds first, each within its range; or a descriptor.

    Returns:
        The expression, whitespace-normalised.

    Raises:
        SubmitError: wrong field count (a 5-field crontab gets its 6-field equivalent in the
            message), a value out of range, bad syntax, or a schedule firing more than once a minute.
    """
    text = " ".join(expr.split())
    if text.lower().startswith("@every"):
        return _validate_every(text, expr)
    if text.startswith("@"):
        if text.lower() in DESCRIPTORS:
            return text.lower()
        raise SubmitError(f"--cron {expr!r}: unknown descriptor; use one of {', '.join(DESCRIPTORS)}, "
                          "'@every <duration>' or a 6-field expression")
    parts = text.split(" ")
    if len(parts) == 5:
        raise SubmitError(f"--cron {expr!r} has 5 fields, but KFP cron has 6 with SECONDS first; as given it "
                          f"would not mean what crontab means. The 6-field equivalent is '0 {text}'")
    if len(parts) != 6:
        raise SubmitError(f"--cron {expr!r}: expected 6 fields (seconds minutes hours day-of-month month "
                          f"day-of-week), got {len(parts)}")
    for part, field in zip(parts, FIELDS, strict=True):
        values = _field_values(part, field, expr)
        if field[0] == "seconds" and len(values) > 1:
            raise SubmitError(f"--cron {expr!r}: seconds field {part!r} fires {len(values)} times a minute; "
                              "use one second, e.g. '0'")
    return text


def go_duration_seconds(text: str) -> float:
    """Seconds of a Go ``time.ParseDuration`` string such as ``1h30m`` or ``90s``.

    Raises:
        ValueError: not a Go duration (a bare number has no unit and is not one).
    """
    pos, total = 0, 0.0
    for m in _GO_TERM.finditer(text):
        if m.start() != pos:
            break
        total += float(m[1]) * _GO_UNITS[m[2]]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a Go duration (e.g. 12h, 1h30m, 90m)")
    return total


def _validate_every(text: str, expr: str) -> str:
    keyword, _, duration = text.partition(" ")
    if keyword.lower() != "@every" or not duration or " " in duration:
        raise SubmitError(f"--cron {expr!r}: expected '@every <duration>', e.g. '@every 12h'")
    try:
        seconds = go_duration_seconds(duration)
    except ValueError as exc:
        raise SubmitError(f"--cron {expr!r}: {exc}") from exc
    if seconds < MIN_EVERY_S:
        raise SubmitError(f"--cron {expr!r}: every {seconds:g} s is more than once a minute; use at least 1m")
    return f"@every {duration}"


def _field_values(part: str, field: tuple, expr: str) -> set[int]:
    name, low, high, names, question = field
    if part == "?":
        if not question:
            raise SubmitError(f"--cron {expr!r}: '?' is only allowed in day of month/week, not {name}")
        return set(range(low, high + 1))
    values: set[int] = set()
    for term in part.split(","):
        m = _TERM.match(term)
        if not m:
            raise SubmitError(f"--cron {expr!r}: {name} field: cannot parse {term!r}")
        if m["range"] == "*":
            start, end = low, high
        else:
            bounds = [_value(b, field, expr) for b in m["range"].split("-")]
            start, end = bounds[0], bounds[-1]
            if start > end:
                raise SubmitError(f"--cron {expr!r}: {name} range {m['range']!r} runs backwards")
            if m["step"] and len(bounds) == 1:
                end = high  # robfig: 'N/step' means from N to the end of the range
        step = int(m["step"]) if m["step"] else 1
        if step < 1 or step > high - low + 1:
            raise SubmitError(f"--cron {expr!r}: {name} step {step} must be 1..{high - low + 1}")
        values.update(range(start, end + 1, step))
    return values


def _value(token: str, field: tuple, expr: str) -> int:
    name, low, high, names, _ = field
    if token.isdigit():
        value = int(token)
    elif names is not None and token.upper() in names:
        value = names.index(token.upper()) + low
    else:
        raise SubmitError(f"--cron {expr!r}: {name} value {token!r} is not a number"
                          + (f" or one of {'/'.join(names)}" if names else ""))
    if not low <= value <= high:
        raise SubmitError(f"--cron {expr!r}: {name} value {value} out of range {low}-{high}")
    return value


@dataclass(frozen=True)
class Scheduled:
    """What :func:`schedule` did."""

    recurring_run_id: str
    pipeline_id: str
    version_id: str
    experiment_id: str
    replaced: tuple[str, ...]


def schedule(client: Any, *, cron: str, pipeline_name: str = DEFAULT_PIPELINE, version_id: str = "latest",
             experiment: str = DEFAULT_EXPERIMENT, job_name: str = DEFAULT_JOB, params: list[str] | None = None,
             namespace: str | None = None, service_account: str | None = None, pipeline_root: str | None = None,
             enabled: bool = True) -> Scheduled:
    """Create or replace the recurring run ``job_name`` for a pipeline version.

    Args:
        client: a ``kfp.Client``.
        cron: 6-field cron expression (validated before any API call).
        pipeline_name: the uploaded pipeline.
        version_id: a pipeline version id, or ``latest`` for the newest upload.
        experiment: experiment holding the schedule (created if absent).
        job_name: schedule name; an existing schedule with this name in the experiment is replaced.
        params: ``NAME=VALUE`` arguments, checked against the version's pipeline spec.
        namespace: Kubeflow profile namespace.
        service_account: Kubernetes service account of the runs' pods.
        pipeline_root: where the scheduled runs write their artifacts (e.g. ``gs://bucket/kfp-root``);
            None = the cluster's default.
        enabled: False creates the schedule paused.

    Returns:
        The new schedule and the ids of the replaced ones.

    Raises:
        SubmitError: bad cron, unknown pipeline/version, or bad parameters.
    """
    cron = validate_cron(cron)
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        raise SubmitError(f"--pipeline-name {pipeline_name}: no such pipeline on the server; upload it with "
                          "pipelines/submit.py --no-run first")
    if version_id == "latest":
        version = latest_version(client, pipeline_id)
    else:
        version = client.get_pipeline_version(pipeline_id, version_id)
    arguments = parse_params(params or [], version.pipeline_spec or None)
    exp = client.create_experiment(experiment, namespace=namespace)
    existing = client.list_recurring_runs(experiment_id=exp.experiment_id, page_size=100,
                                          filter=equals_filter("display_name", job_name))
    old = [r.recurring_run_id for r in (existing.recurring_runs or [])]
    for rid in old:
        client.disable_recurring_run(rid)  # paused while we swap, so the old and new never both fire
    try:
        created = client.create_recurring_run(
            exp.experiment_id, job_name, description=f"{pipeline_name} {version.display_name}: {cron}",
            cron_expression=cron, max_concurrency=1, no_catchup=True, params=arguments,
            pipeline_id=pipeline_id, version_id=version.pipeline_version_id, enabled=enabled,
            service_account=service_account, pipeline_root=pipeline_root)
    except BaseException:
        for rid in old:
            client.enable_recurring_run(rid)  # leave the previous schedule as it was
        raise
    for rid in old:
        client.delete_recurring_run(rid)
    return Scheduled(created.recurring_run_id, pipeline_id, version.pipeline_version_id, exp.experiment_id,
                     tuple(old))


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags of schedule.py."""
    p = argparse.ArgumentParser(description="Create or update the recurring retraining run of the MER pipeline.")
    add_connection_args(p)
    p.add_argument("--cron", required=True,
                   help="6-field cron, seconds first, in UTC (the controller's time zone): nightly 02:00 UTC = "
                        "'0 0 2 * * *'; or @daily, @hourly, ..., '@every 12h'")
    p.add_argument("--pipeline-name", default=DEFAULT_PIPELINE, help=f"pipeline name (default {DEFAULT_PIPELINE})")
    p.add_argument("--version-id", default="latest", help="pipeline version id, or 'latest' (default)")
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"experiment (default {DEFAULT_EXPERIMENT})")
    p.add_argument("--job-name", default=DEFAULT_JOB, help=f"schedule name (default {DEFAULT_JOB})")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="pipeline argument, YAML-typed (repeatable)")
    p.add_argument("--service-account", help="Kubernetes service account for the runs' pods")
    p.add_argument("--pipeline-root", help="artifact root of the scheduled runs, e.g. gs://bucket/kfp-root "
                                           "(default: the cluster's default store)")
    p.add_argument("--disabled", action="store_true", help="create the schedule paused")
    add_backend_check_arg(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse flags, create/replace the schedule, print the ids."""
    args = build_parser().parse_args(argv)
    try:
        validate_cron(args.cron)  # fail before connecting
        token = read_token(args.token_env, args.token_file)
        client = make_client(args.host, args.namespace, token)
        if not args.skip_backend_check:
            check_backend(client)
        done = schedule(client, cron=args.cron, pipeline_name=args.pipeline_name, version_id=args.version_id,
                        experiment=args.experiment, job_name=args.job_name, params=args.param,
                        namespace=args.namespace, service_account=args.service_account,
                        pipeline_root=args.pipeline_root, enabled=not args.disabled)
    except Exception as exc:
        message = str(exc) if isinstance(exc, SubmitError) else api_error(exc)
        if message is None:
            raise
        print(f"schedule.py: error: {message}", file=sys.stderr)
        return 2
    replaced = f", replacing {', '.join(done.replaced)}" if done.replaced else ""
    print(f"recurring run {args.job_name} ({done.recurring_run_id}) for version {done.version_id}{replaced}; "
          "cron times are UTC unless the cluster's cronScheduleTimezone says otherwise")
    return 0


if __name__ == "__main__":
    sys.exit(main())
