"""``mer serve``: the real server on loopback with a tiny trained model and a real HTTP client.

The model is trained on features from the real extractors (log-mel audio, MiniLM text), so the
server takes raw audio and text too. Every bad input is answered 4xx naming instance and field,
and the server keeps answering.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import requests

from mer_lib.cli import main
from mer_lib.data.featureset import read_metadata
from mer_lib.prediction import predict
from mer_lib.training.api import train
from tests.fixtures.raw_iemocap import voice, write_wav
from tests.serve_helpers import free_port, running_server
from tests.test_predict import _copy_set, build_real_featureset

PROBS = ["p_happy", "p_angry", "p_sad", "p_neutral"]
SERVE_ARGS = {"--max-request-bytes": 3_000_000, "--max-instances": 8, "--max-frames": 400, "--max-audio-seconds": 5,
              "--threads": 1}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """(feature set, run dir, raw clips): utt_fusion trained one epoch on real-extractor features."""
    base = tmp_path_factory.mktemp("serve_real")
    clips = build_real_featureset(base / "fs")
    train("utt_fusion", str(base / "fs"), str(base / "run"), folds="1", epochs=1, progress=False,
          overrides=["train.batch_size=8"])
    return base / "fs", base / "run", clips


@pytest.fixture(scope="module")
def server(real: tuple, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mer serve`` in a subprocess on 127.0.0.1; yields its base URL once the model is ready."""
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    with running_server(real[1], log, *[str(x) for kv in SERVE_ARGS.items() for x in kv]) as url:
        yield url


def _features(fs: Path, uid: str) -> dict[str, np.ndarray]:
    meta = read_metadata(fs)
    out = {}
    for m, d in (("a", "A"), ("v", "V"), ("l", "L")):
        with h5py.File(fs / d / f"{meta['spec']['names'][m]}.h5", "r") as f:
            out[m] = f[uid][()]
    return out


def _post(url: str, body: object, **kw: object) -> requests.Response:
    return requests.post(f"{url}/v1/models/mer:predict", json=body, timeout=60, **kw)


def _probs(pred: dict) -> np.ndarray:
    return np.array([pred["probabilities"][k[2:]] for k in PROBS])


def test_predictions_for_al_and_v_only_match_mer_predict(server: str, real: tuple, tmp_path: Path) -> None:
    fs, run, clips = real
    uids = sorted(clips)
    f0, f1 = _features(fs, uids[0]), _features(fs, uids[1])
    al = {"a": f0["a"].tolist(), "l": f0["l"].tolist(), "id": uids[0]}
    v_only = {"v": f1["v"].tolist()}
    r = _post(server, {"instances": [al, v_only]})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["modalities"] for p in preds] == ["al", "v"]
    assert preds[0]["id"] == uids[0] and "id" not in preds[1]
    for p in preds:
        assert set(p["probabilities"]) == {"happy", "angry", "sad", "neutral"}
        assert abs(sum(p["probabilities"].values()) - 1.0) < 1e-5
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
    # Alone in a request, an instance gets exactly what `mer predict` gives the same features.
    solo = _post(server, {"instances": [al]}).json()["predictions"][0]
    ref = predict(str(run), str(_copy_set(fs, tmp_path / "al", [uids[0]], drop={"v": {uids[0]}}))).predictions
    assert ref["modalities"].tolist() == ["al"] and solo["label"] == ref["pred_label"][0]
    np.testing.assert_allclose(_probs(solo), ref[PROBS].to_numpy()[0], atol=1e-5)


def test_raw_audio_and_text_match_mer_predict(server: str, real: tuple, tmp_path: Path) -> None:
    _, run, clips = real
    uid = sorted(clips)[3]
    wave_, text = clips[uid]
    write_wav(tmp_path / "clip.wav", wave_)
    audio = base64.b64encode((tmp_path / "clip.wav").read_bytes()).decode()
    r = _post(server, {"instances": [{"audio": audio, "text": text}, {"text": text}]})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert [p["modalities"] for p in got] == ["al", "l"]
    ref = predict(str(run), audio=str(tmp_path / "clip.wav"), text=text).predictions
    solo = _post(server, {"instances": [{"audio": audio, "text": text}]}).json()["predictions"][0]
    np.testing.assert_allclose(_probs(solo), ref[PROBS].to_numpy()[0], atol=1e-5)


def _wav_b64(seconds: float) -> str:
    buf = io.BytesIO()
    import wave

    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((voice("hap", seconds, 0) * 32767).astype("<i2").tobytes())
    return base64.b64encode(buf.getvalue()).decode()


def test_bad_inputs_answered_4xx_and_the_server_keeps_answering(server: str) -> None:
    rng = np.random.default_rng(0)
    good = {"a": rng.normal(size=(6, 56)).tolist(), "l": rng.normal(size=(7, 384)).tolist()}
    nan_a = rng.normal(size=(6, 56))
    nan_a[1, 2] = np.nan
    inf_l = rng.normal(size=(7, 384))
    inf_l[0, 0] = np.inf
    cases = [
        ({"instances": [good, {}]}, 400, "instances[1]: no modality"),
        ({"instances": [{"a": [[0.5] * 55]}]}, 400, "instances[0].a[0]: frame has 55 values"),
        ({"instances": [good, {"a": nan_a.tolist()}]}, 400, "instances[1].a[1][2]: nan is not a finite number"),
        ({"instances": [{"l": inf_l.tolist()}]}, 400, "instances[0].l[0][0]: inf is not a finite number"),
        ({"instances": [{"a": [["0.5"] * 56]}]}, 400, "instances[0].a: frames must hold numbers only"),
        ({"instances": [{"a": good["a"], "x": 1}]}, 400, "instances[0].x: unknown field"),
        ({"instances": [{"a": good["a"], "audio": _wav_b64(0.5)}]}, 400, "instances[0]: both a (features) and audio"),
        ({"instances": [good, {"audio": base64.b64encode(b"not a wav").decode()}]}, 400,
         "instances[1].audio: undecodable audio"),
        ({"instances": [{"audio": "%%% not base64"}]}, 400, "instances[0].audio: not valid base64"),
        ({"instances": [{"text": "   "}]}, 400, "instances[0].text: expected a non-empty transcript"),
        ({"instances": "abc"}, 400, 'Expected "instances" to be a list'),  # kserve's own check
        ({"inputs": []}, 400, "expected a JSON object {\"instances\""),
        ({"instances": [{"a": [[0.5] * 56] * 401}]}, 413, "instances[0].a: 401 frames exceed the limit of 400"),
        ({"instances": [{"audio": _wav_b64(6.0)}]}, 413, "instances[0].audio: 6.0 s of audio exceed"),
        ({"instances": [good] * 9}, 413, "instances: 9 instances exceed the limit of 8"),
        ({"instances": [{"l": [[0.5] * 384] * 300}] * 8}, 413, "request body:"),  # 4.6 MB > --max-request-bytes
    ]
    for body, status, message in cases:
        # json.dumps writes NaN/Infinity as Python clients do; the server must name them, not choke.
        r = requests.post(f"{server}/v1/models/mer:predict", data=json.dumps(body), timeout=60,
                          headers={"content-type": "application/json"})
        assert r.status_code == status, (message, r.status_code, r.text[:300])
        assert message in r.json()["error"], (message, r.text[:300])
    r = requests.post(f"{server}/v1/models/mer:predict", data=b"{not json", timeout=10)
    assert r.status_code == 400
    # Still up and still right.
    assert requests.get(f"{server}/v1/models/mer", timeout=10).json() == {"name": "mer", "ready": True}
    ok = _post(server, {"instances": [good]})
    assert ok.status_code == 200 and ok.json()["predictions"][0]["modalities"] == "al"


def test_open_inference_protocol_v2(server: str) -> None:
    meta = requests.get(f"{server}/v2/models/mer", timeout=10).json()
    assert {i["name"]: i["shape"] for i in meta["inputs"]} == {"a": [-1, -1, 56], "v": [-1, -1, 136],
                                                               "l": [-1, -1, 384]}
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities", "modalities"]
    assert requests.get(f"{server}/v2/models/mer/ready", timeout=10).json()["ready"] is True
    rng = np.random.default_rng(1)
    a, l_ = rng.normal(size=(2, 5, 56)), rng.normal(size=(2, 6, 384))
    body = {"id": "req-1", "inputs": [
        {"name": "a", "shape": list(a.shape), "datatype": "FP32", "data": a.reshape(-1).tolist()},
        {"name": "l", "shape": list(l_.shape), "datatype": "FP32", "data": l_.reshape(-1).tolist()}]}
    r = requests.post(f"{server}/v2/models/mer/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert r.json()["id"] == "req-1" and out["modalities"]["data"] == ["al", "al"]
    probs = np.array(out["probabilities"]["data"]).reshape(out["probabilities"]["shape"])
    assert out["probabilities"]["parameters"]["labels"] == "happy,angry,sad,neutral"
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # The same instances through v1 give the same answer.
    v1 = _post(server, {"instances": [{"a": a[i].tolist(), "l": l_[i].tolist()} for i in range(2)]}).json()
    np.testing.assert_allclose(probs, [_probs(p) for p in v1["predictions"]], atol=1e-6)
    assert out["label"]["data"] == [p["label"] for p in v1["predictions"]]
    bad = {"inputs": [{"name": "a", "shape": [1, 2, 55], "datatype": "FP32", "data": [0.5] * 110}]}
    r = requests.post(f"{server}/v2/models/mer/infer", json=bad, timeout=10)
    assert r.status_code == 400 and "instances[0].a: frames have shape [2, 55]" in r.json()["error"]
    bad = {"inputs": [{"name": "z", "shape": [1], "datatype": "FP32", "data": [0.5]}]}
    r = requests.post(f"{server}/v2/models/mer/infer", json=bad, timeout=10)
    assert r.status_code == 400 and "inputs.z: unknown input" in r.json()["error"]


def test_one_forward_pass_per_request(real: tuple) -> None:
    from mer_lib.serving import Predictor

    _, run, _ = real
    predictor = Predictor.load(str(run), warm_up=False)
    calls = []
    predictor.loaded.folds[0].model.register_forward_hook(lambda *_: calls.append(1))
    rng = np.random.default_rng(2)
    instances = [{"a": rng.normal(size=(4 + i, 56)).tolist()} for i in range(5)] + [{"v": [[0.1] * 136] * 3}]
    preds = predictor.predict_instances(instances)
    assert len(calls) == 1 and [p["modalities"] for p in preds] == ["a"] * 5 + ["v"]


def test_serve_refuses_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--model", str(tmp_path / "nothing"), "--port", str(free_port())]) == 2
    assert "no model here" in capsys.readouterr().err


def test_cpu_image_runs_mer_serve() -> None:
    text = (Path(__file__).resolve().parents[1] / "images" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mer", "serve"]' in text and "EXPOSE 8080" in text
    extras = next(ln for ln in text.splitlines() if ln.startswith("ARG EXTRAS=")).split("=", 1)[1].split(",")
    assert "serving" in extras and "features" in extras  # raw audio/text need the extractors


def test_loads_a_registry_champion_like_mer_predict(real: tuple, tmp_path: Path) -> None:
    from mer_lib.registry.uri import UriRegistry
    from mer_lib.serving import Predictor

    _, run, _ = real
    reg = UriRegistry(tmp_path / "registry")
    v = reg.register("mer-emotion", run, metrics={"average_ua": 0.4}, data_fingerprint="fp", config={})
    assert reg.promote_if_better("mer-emotion", v.number).promoted
    info = Predictor.load(str(tmp_path / "registry" / "mer-emotion"), warm_up=False).describe()
    assert (info["model"], info["version"], info["type"]) == ("mer-emotion", "1", "utt_fusion")
    assert info["raw_media"] == ["audio", "text"] and info["dims"] == {"a": 56, "v": 136, "l": 384}
