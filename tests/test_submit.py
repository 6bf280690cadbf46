"""pipelines/submit.py with the real kfp.Client against the fake KFP API server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines import _client as client_helpers
from pipelines import submit
from tests.fake_kfp import FakeKFP, isolate_kfp_home
from tests.kfp_tiny_pipeline import compile_tiny_pipeline


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compiled trivial pipeline (the real one may not be compiled in this checkout)."""
    return compile_tiny_pipeline(tmp_path_factory.mktemp("pkg") / "tiny.yaml")


@pytest.fixture
def kfp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKFP]:
    """A fresh fake KFP API on loopback, with the client's HOME isolated."""
    isolate_kfp_home(monkeypatch, tmp_path / "home")
    with FakeKFP() as server:
        yield server


def test_parse_params_types_and_errors(package: Path) -> None:
    spec = client_helpers.load_package(package)
    params = client_helpers.parse_params(
        ["run_tag=007", "epochs=3", "lr=1", "force_retrain=true", "folds=[1, 3]", "extra={a: 1}",
         "data_uri=gs://b/features"], spec)
    assert params == {"run_tag": "007", "epochs": 3, "lr": 1.0, "force_retrain": True, "folds": [1, 3],
                      "extra": {"a": 1}, "data_uri": "gs://b/features"}
    assert isinstance(params["lr"], float)
    with pytest.raises(client_helpers.SubmitError, match="no such parameter; known: data_uri, epochs"):
        client_helpers.parse_params(["run_tag=x", "epoch=3"], spec)
    with pytest.raises(client_helpers.SubmitError, match="NUMBER_INTEGER needs an integer"):
        client_helpers.parse_params(["run_tag=x", "epochs=2.5"], spec)
    with pytest.raises(client_helpers.SubmitError, match="BOOLEAN needs true or false"):
        client_helpers.parse_params(["run_tag=x", "force_retrain=maybe"], spec)
    with pytest.raises(client_helpers.SubmitError, match="required pipeline parameter.*run_tag"):
        client_helpers.parse_params([], spec)
    with pytest.raises(client_helpers.SubmitError, match="expected NAME=VALUE"):
        client_helpers.parse_params(["run_tag"], spec)
    with pytest.raises(client_helpers.SubmitError, match="given twice"):
        client_helpers.parse_params(["run_tag=a", "run_tag=b"], spec)


def test_load_package_errors(tmp_path: Path) -> None:
    with pytest.raises(client_helpers.SubmitError, match="compile it first"):
        client_helpers.load_package(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: a mapping\n")
    with pytest.raises(client_helpers.SubmitError, match="not a compiled KFP pipeline"):
        client_helpers.load_package(bad)


def test_submit_creates_pipeline_then_versions_and_runs(kfp_server: FakeKFP, package: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    rc = submit.main(["--host", kfp_server.url, "--package", str(package), "--pipeline-name", "mer-training",
                      "--experiment", "nightly", "--run-name", "first", "--param", "run_tag=a1",
                      "--param", "epochs=5", "--param", "force_retrain=true"])
    assert rc == 0
    upload = kfp_server.calls("POST", "/pipelines/upload")
    assert len(upload) == 1 and upload[0].query["name"] == "mer-training"
    assert "pipelineInfo" in upload[0].body["uploadfile"]  # the package itself was sent
    assert kfp_server.calls("POST", "/pipelines/upload_version") == []
    exp = kfp_server.calls("POST", "/experiments")
    assert exp[0].body["display_name"] == "nightly"
    run = kfp_server.calls("POST", "/runs")[0].body
    version_id = next(iter(kfp_server.state.versions))
    pipeline_id = next(iter(kfp_server.state.pipelines))
    assert run["display_name"] == "first"
    assert run["experiment_id"] == kfp_server.state.experiments[next(iter(kfp_server.state.experiments))][
        "experiment_id"]
    assert run["pipeline_version_reference"] == {"pipeline_id": pipeline_id, "pipeline_version_id": version_id}
    assert "pipeline_spec" not in run  # the run references the uploaded version, not an inline copy
    assert run["runtime_config"]["parameters"] == {"run_tag": "a1", "epochs": 5, "force_retrain": True}
    out = capsys.readouterr().out
    assert f"run {next(iter(kfp_server.state.runs))} in experiment nightly" in out

    # Second submission: a new version of the existing pipeline, same experiment (not re-created).
    rc = submit.main(["--host", kfp_server.url, "--package", str(package), "--experiment", "nightly",
                      "--version-name", "v2", "--param", "run_tag=b2"])
    assert rc == 0
    uv = kfp_server.calls("POST", "/pipelines/upload_version")
    assert len(uv) == 1 and uv[0].query["name"] == "v2" and uv[0].query["pipelineid"] == pipeline_id
    assert len(kfp_server.calls("POST", "/experiments")) == 1
    second = kfp_server.calls("POST", "/runs")[1].body
    v2 = [v for v in kfp_server.state.versions.values() if v["display_name"] == "v2"][0]
    assert second["pipeline_version_reference"]["pipeline_version_id"] == v2["pipeline_version_id"]
    assert second["display_name"] == "v2"


def test_default_version_name_is_unique_and_traceable(kfp_server: FakeKFP, package: Path) -> None:
    client = client_helpers.make_client(kfp_server.url)
    first = submit.submit(client, package, pipeline_name="p", params=["run_tag=x"], start_run=False)
    second = submit.submit(client, package, pipeline_name="p", params=["run_tag=x"], start_run=False)
    assert first.version_name == "p"  # created with the pipeline, named by the server after it
    assert second.version_name.startswith("p-") and second.version_name.endswith(
        client_helpers_digest(package))
    assert kfp_server.calls("POST", "/runs") == []


def client_helpers_digest(package: Path) -> str:
    import hashlib

    return hashlib.sha256(package.read_bytes()).hexdigest()[:8]


def test_bad_param_uploads_nothing(kfp_server: FakeKFP, package: Path, capsys: pytest.CaptureFixture) -> None:
    rc = submit.main(["--host", kfp_server.url, "--package", str(package), "--param", "run_tag=x",
                      "--param", "nope=1"])
    assert rc == 2
    assert "--param nope: the pipeline has no such parameter" in capsys.readouterr().err
    assert kfp_server.requests == []  # rejected before even connecting


def test_token_from_env_is_sent_but_never_printed(kfp_server: FakeKFP, package: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    secret = "s3cr3t-token-value"
    monkeypatch.setenv("MER_KFP_TOKEN", secret)
    rc = submit.main(["--host", kfp_server.url, "--package", str(package), "--token-env", "MER_KFP_TOKEN",
                      "--param", "run_tag=x"])
    assert rc == 0
    assert {r.authorization for r in kfp_server.requests} == {f"Bearer {secret}"}
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err


def test_token_file_and_missing_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("abc\n")
    assert client_helpers.read_token(token_file=str(token_file)) == "abc"
    monkeypatch.delenv("MER_NO_SUCH_TOKEN", raising=False)
    with pytest.raises(client_helpers.SubmitError, match="MER_NO_SUCH_TOKEN: the environment variable is unset"):
        client_helpers.read_token(token_env="MER_NO_SUCH_TOKEN")
    with pytest.raises(client_helpers.SubmitError, match="no such file"):
        client_helpers.read_token(token_file=str(tmp_path / "absent"))
    assert client_helpers.read_token() is None


def test_server_error_is_reported_without_traceback(kfp_server: FakeKFP, package: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    args = ["--host", kfp_server.url, "--package", str(package), "--param", "run_tag=x", "--no-run"]
    assert submit.main(args) == 0
    assert submit.main([*args, "--version-name", "dup"]) == 0
    assert submit.main([*args, "--version-name", "dup"]) == 2  # the server refuses a duplicate name
    assert "KFP API answered 409" in capsys.readouterr().err
