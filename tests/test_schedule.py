"""pipelines/schedule.py: cron validation, and recurring runs created/replaced via the real kfp.Client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines import _client as client_helpers
from pipelines import schedule, submit
from tests.fake_kfp import FakeKFP, isolate_kfp_home
from tests.kfp_tiny_pipeline import compile_tiny_pipeline


@pytest.fixture
def kfp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKFP]:
    """A fake KFP API holding one uploaded pipeline ``mer-training`` with two versions.

    The first version is the one the server creates with the pipeline (named after it).
    """
    isolate_kfp_home(monkeypatch, tmp_path / "home")
    package = compile_tiny_pipeline(tmp_path / "tiny.yaml")
    with FakeKFP() as server:
        client = client_helpers.make_client(server.url)
        submit.submit(client, package, pipeline_name="mer-training", start_run=False, params=["run_tag=x"])
        submit.submit(client, package, pipeline_name="mer-training", version_name="v2", start_run=False,
                      params=["run_tag=x"])
        server.requests.clear()
        yield server


@pytest.mark.parametrize("expr", ["0 0 2 * * *", "30 15 */6 1-15 JAN-MAR,DEC MON-FRI", "0 0 9 ? * 2-6",
                                  "0 */5 * * * *", "0 0 0 1 1 ?", "@daily", "0  0 2 * *  *", "@every 12h",
                                  "@every 1h30m", "@every  90m", "@every 1.5h", "@every 60s"])
def test_valid_cron(expr: str) -> None:
    normalised = " ".join(expr.split())
    assert schedule.validate_cron(expr) == (normalised.lower() if expr.startswith("@") else normalised)


def test_go_durations() -> None:
    assert schedule.go_duration_seconds("1h30m") == 5400
    assert schedule.go_duration_seconds("1.5h") == 5400
    assert schedule.go_duration_seconds("2h45m30s") == 9930
    assert schedule.go_duration_seconds("1500ms") == 1.5
    for bad in ("12", "h", "1d", "1h 30m", "-1h", ""):
        with pytest.raises(ValueError, match="not a Go duration"):
            schedule.go_duration_seconds(bad)


@pytest.mark.parametrize("expr, message", [
    ("0 2 * * *", "has 5 fields.*SECONDS first.*The 6-field equivalent is '0 0 2 \\* \\* \\*'"),
    ("* * * * *", "The 6-field equivalent is '0 \\* \\* \\* \\* \\*'"),
    ("0 0 2 * * * *", "expected 6 fields.*got 7"),
    ("60 0 2 * * *", "seconds value 60 out of range 0-59"),
    ("0 60 2 * * *", "minutes value 60 out of range 0-59"),
    ("0 0 24 * * *", "hours value 24 out of range 0-23"),
    ("0 0 2 0 * *", "day of month value 0 out of range 1-31"),
    ("0 0 2 * 13 *", "month value 13 out of range 1-12"),
    ("0 0 2 * * 7", "day of week value 7 out of range 0-6"),
    ("0 0 2 * FOO *", "month value 'FOO' is not a number or one of JAN/"),
    ("0 0 5-2 * * *", "hours range '5-2' runs backwards"),
    ("0 0 */0 * * *", "hours step 0 must be 1..24"),
    ("0 ? 2 * * *", "'\\?' is only allowed in day of month/week, not minutes"),
    ("* 0 2 * * *", "seconds field '\\*' fires 60 times a minute"),
    ("0 0 2 * * 1--2", "day of week field: cannot parse '1--2'"),
    ("@nightly", "unknown descriptor"),
    ("@every", "expected '@every <duration>'"),
    ("@every 1d", "'1d' is not a Go duration"),
    ("@every 12", "'12' is not a Go duration"),
    ("@every 30s", "more than once a minute"),
])
def test_invalid_cron(expr: str, message: str) -> None:
    with pytest.raises(client_helpers.SubmitError, match=message):
        schedule.validate_cron(expr)


def test_five_field_cron_rejected_before_any_request(kfp_server: FakeKFP, capsys: pytest.CaptureFixture) -> None:
    assert schedule.main(["--host", kfp_server.url, "--cron", "0 2 * * *"]) == 2
    assert "The 6-field equivalent is '0 0 2 * * *'" in capsys.readouterr().err
    assert kfp_server.requests == []


def test_schedule_latest_version(kfp_server: FakeKFP, capsys: pytest.CaptureFixture) -> None:
    rc = schedule.main(["--host", kfp_server.url, "--cron", "0 0 2 * * *", "--experiment", "retrain",
                        "--param", "run_tag=nightly", "--param", "force_retrain=false", "--param", "epochs=4"])
    assert rc == 0
    posts = kfp_server.calls("POST", "/recurringruns")
    assert len(posts) == 1
    body = posts[0].body
    v2 = next(v for v in kfp_server.state.versions.values() if v["display_name"] == "v2")
    assert body["pipeline_version_reference"] == {"pipeline_id": v2["pipeline_id"],
                                                  "pipeline_version_id": v2["pipeline_version_id"]}
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["display_name"] == "mer-retraining"
    assert body["runtime_config"]["parameters"] == {"run_tag": "nightly", "force_retrain": False, "epochs": 4}
    exp = next(e for e in kfp_server.state.experiments.values() if e["display_name"] == "retrain")
    assert body["experiment_id"] == exp["experiment_id"]
    assert "pipeline_spec" not in body  # scheduled by version reference, not an inline package
    assert "pipeline_root" not in body.get("runtime_config", {})  # no --pipeline-root: the cluster default
    out = capsys.readouterr().out
    assert "recurring run mer-retraining (recurring-" in out and "UTC" in out
    assert kfp_server.calls("GET", "/healthz")  # the backend version was checked


def test_schedule_every_with_pipeline_root(kfp_server: FakeKFP) -> None:
    rc = schedule.main(["--host", kfp_server.url, "--cron", "@every 12h", "--param", "run_tag=x",
                        "--pipeline-root", "gs://bucket/kfp-root"])
    assert rc == 0
    body = kfp_server.calls("POST", "/recurringruns")[0].body
    assert body["trigger"] == {"cron_schedule": {"cron": "@every 12h"}}
    assert body["runtime_config"]["pipeline_root"] == "gs://bucket/kfp-root"


@pytest.mark.parametrize("tag, message", [
    ("2.4.1", "the KFP backend is 2.4.1, older than 2.14"),
    ("unknown", "does not report its version"),
])
def test_old_backend_refused_before_anything_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture, tag: str,
                                                        message: str) -> None:
    isolate_kfp_home(monkeypatch, tmp_path / "home")
    package = compile_tiny_pipeline(tmp_path / "tiny.yaml")
    with FakeKFP(tag_name=tag) as server:
        assert schedule.main(["--host", server.url, "--cron", "0 0 2 * * *", "--param", "run_tag=x"]) == 2
        assert message in capsys.readouterr().err
        assert submit.main(["--host", server.url, "--package", str(package), "--param", "run_tag=x"]) == 2
        assert message in capsys.readouterr().err
        # healthz only (the client's constructor reads it too): nothing uploaded or scheduled.
        assert server.requests and all(r.method == "GET" and r.path.endswith("/healthz") for r in server.requests)
        # The override, for a backend that does not say its version.
        assert submit.main(["--host", server.url, "--package", str(package), "--param", "run_tag=x",
                            "--skip-backend-check", "--no-run"]) == 0
        assert server.state.versions


def test_backend_version_parsing() -> None:
    class Healthz:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def healthz_service_get_healthz(self, _preload_content: bool) -> Healthz:
            return self

    class Client:
        def __init__(self, data: bytes) -> None:
            self._healthz_api = Healthz(data)

    assert client_helpers.check_backend(Client(b'{"tag_name": "2.14.0"}')) == "2.14.0"
    assert client_helpers.check_backend(Client(b'{"tag_name": "v2.17.3-rc.1"}')) == "v2.17.3-rc.1"
    with pytest.raises(client_helpers.SubmitError, match="older than 2.14"):
        client_helpers.check_backend(Client(b'{"tag_name": "2.5.0"}'))
    with pytest.raises(client_helpers.SubmitError, match="does not report its version"):
        client_helpers.check_backend(Client(b'{"multi_user": false}'))


def test_schedule_replaces_existing_job(kfp_server: FakeKFP) -> None:
    client = client_helpers.make_client(kfp_server.url)
    v1 = next(v for v in kfp_server.state.versions.values() if v["display_name"] == "mer-training")
    first = schedule.schedule(client, cron="0 0 2 * * *", version_id=v1["pipeline_version_id"],
                              params=["run_tag=a"])
    assert first.replaced == () and first.version_id == v1["pipeline_version_id"]
    second = schedule.schedule(client, cron="0 30 3 * * *", params=["run_tag=b"], enabled=False)
    assert second.replaced == (first.recurring_run_id,)
    # The old schedule was paused before the new one was created, then deleted.
    order = [(r.method, r.path.rsplit("/", 1)[-1]) for r in kfp_server.requests
             if "/recurringruns/" in r.path or (r.method == "POST" and r.path.endswith("/recurringruns"))]
    assert order[-3:] == [("POST", f"{first.recurring_run_id}:disable"), ("POST", "recurringruns"),
                          ("DELETE", first.recurring_run_id)]
    assert list(kfp_server.state.recurring) == [second.recurring_run_id]
    remaining = kfp_server.state.recurring[second.recurring_run_id]
    assert remaining["trigger"]["cron_schedule"]["cron"] == "0 30 3 * * *" and remaining["mode"] == "DISABLE"


def test_failed_replacement_keeps_old_schedule(kfp_server: FakeKFP, monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_helpers.make_client(kfp_server.url)
    first = schedule.schedule(client, cron="0 0 2 * * *", params=["run_tag=a"])

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("server refused")

    monkeypatch.setattr(client, "create_recurring_run", refuse)
    with pytest.raises(RuntimeError, match="server refused"):
        schedule.schedule(client, cron="0 0 3 * * *", params=["run_tag=b"])
    assert list(kfp_server.state.recurring) == [first.recurring_run_id]
    assert kfp_server.state.recurring[first.recurring_run_id]["mode"] == "ENABLE"  # re-enabled


def test_schedule_errors(kfp_server: FakeKFP, capsys: pytest.CaptureFixture) -> None:
    base = ["--host", kfp_server.url, "--cron", "0 0 2 * * *"]
    assert schedule.main([*base, "--pipeline-name", "absent", "--param", "run_tag=x"]) == 2
    assert "--pipeline-name absent: no such pipeline" in capsys.readouterr().err
    assert schedule.main([*base, "--param", "run_tag=x", "--param", "epochs=two"]) == 2
    assert "--param epochs='two': parameter type NUMBER_INTEGER needs an integer" in capsys.readouterr().err
    assert schedule.main([*base, "--version-id", "version-999", "--param", "run_tag=x"]) == 2
    assert "KFP API answered 404" in capsys.readouterr().err
    assert kfp_server.calls("POST", "/recurringruns") == []
