"""``mer predict`` / :func:`mer_lib.prediction.predict`: equality with the training engine's test
predictions, any subset of modalities, fold ensembles, registry versions, a single raw clip end to
end through the real extractors, and every kind of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib.cli import main
from mer_lib.conditions import MODALITIES
from mer_lib.data.build import finalize_featureset
from mer_lib.data.featureset import FeatureSpec, read_metadata, read_split, write_modality
from mer_lib.prediction import PredictionError, predict, write_result
from mer_lib.prediction.api import absent_policy
from mer_lib.prediction.summary import metrics_of, render_html, render_markdown, summarize
from mer_lib.training.api import train
from mer_lib.training.engine import TEST_CONDITIONS
from tests.fixtures.raw_iemocap import WORDS, voice, write_wav

PROBS = ["p_happy", "p_angry", "p_sad", "p_neutral"]
TST = "1:tst"  # fold 1's test split (8 utterances): keeps every prediction small


@pytest.fixture(scope="module")
def run_dir(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """utt_fusion trained one epoch on fold 1 of the tiny synthetic set."""
    out = tmp_path_factory.mktemp("pred_run") / "uf"
    train("utt_fusion", str(tiny_data), str(out), folds="1", epochs=1, progress=False)
    return out


def build_real_featureset(out: Path, speakers: int = 10, per_speaker: int = 1) -> dict[str, tuple[np.ndarray, str]]:
    """A feature set whose A and L come from the real extractors (log-mel on numpy voices, MiniLM on
    transcripts) and whose ``featureset.json`` records their settings as ``mer extract`` does.

    V uses the real landmark extractor's settings, but its training features are random (dlib on
    video is slow on a shared CPU); the clips predicted from raw media below carry no video.

    Returns:
        utterance id -> (waveform, transcript).
    """
    from mer_lib.features.api import extract_clip
    from mer_lib.features.extractors import ExtractorChoice, licences_for, settings_for

    settings = settings_for(ExtractorChoice(upsample=0), "avl")
    spec = FeatureSpec(names={m: settings[m]["name"] for m in MODALITIES},
                       dims={m: int(settings[m]["dim"]) for m in MODALITIES})
    rng = np.random.default_rng(0)
    clips, feats, labels, who = {}, {m: {} for m in MODALITIES}, {}, {}
    codes = ("hap", "ang", "sad", "neu")
    for s in range(1, speakers // 2 + 1):
        for g in ("F", "M"):
            for k in range(per_speaker):
                uid = f"Ses0{s}F_impro01_{g}{k:03d}"
                code = codes[(k + s + (g == "M")) % 4]
                wave_, text = voice(code, 0.8, seed=len(clips)), WORDS[code]
                got = extract_clip(wave_, None, text, settings=settings)
                feats["a"][uid], feats["l"][uid] = got["a"], got["l"]
                feats["v"][uid] = rng.normal(size=(6, spec.dims["v"])).astype(np.float32)
                clips[uid] = (wave_, text)
                labels[uid] = codes.index(code)
                who[uid] = (s, f"Ses0{s}_{g}", g)
    for m in MODALITIES:
        write_modality(out, spec, m, sorted(feats[m].items()))
    finalize_featureset(out, spec, labels, who, extra_meta={"generator": "mer extract", "settings": settings,
                                                            "licences": licences_for(settings)})
    return clips


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """(feature set, run dir, clips) of a model trained on real-extractor features."""
    base = tmp_path_factory.mktemp("pred_real")
    clips = build_real_featureset(base / "fs")
    train("utt_fusion", str(base / "fs"), str(base / "run"), folds="1", epochs=1, progress=False,
          overrides=["train.batch_size=8"])
    return base / "fs", base / "run", clips


def test_predictions_equal_the_engine_test_predictions(run_dir: Path, tiny_data: Path) -> None:
    ref = pd.read_csv(run_dir / "fold_1" / "predictions_tst.csv")
    res = predict(str(run_dir), str(tiny_data), split="1:tst", conditions=TEST_CONDITIONS, fold="1")
    got = res.predictions
    assert len(got) == len(ref) == 7 * ref["id"].nunique()
    assert got["id"].tolist() == ref["id"].tolist()
    assert got["modalities"].tolist() == ref["condition"].tolist()
    assert got["pred"].tolist() == ref["pred"].tolist()
    np.testing.assert_allclose(got[PROBS].to_numpy(), ref[PROBS].to_numpy(), atol=1e-6)
    names = ["happy", "angry", "sad", "neutral"]
    assert got["label"].tolist() == [names[k] for k in ref["label"]]
    assert set(got["model"]) == {"utt_fusion"} and set(got["fold"]) == {"1"} and set(got["absent"]) == {"zeros"}
    assert res.info["utterances"] == ref["id"].nunique() and res.info["skipped"] == 0


def _copy_set(src: Path, dst: Path, keep: list[str], drop: dict[str, set[str]] | None = None,
              edit: dict[tuple[str, str], np.ndarray] | None = None) -> Path:
    """A copy of some utterances of a feature set (A/V/L files plus manifest), dropping or replacing
    some modalities of some of them."""
    meta = read_metadata(src)
    for m, d in (("a", "A"), ("v", "V"), ("l", "L")):
        name = meta["spec"]["names"][m]
        (dst / d).mkdir(parents=True)
        with h5py.File(src / d / f"{name}.h5", "r") as fi, h5py.File(dst / d / f"{name}.h5", "w") as fo:
            for uid in keep:
                if uid in (drop or {}).get(m, set()):
                    continue
                fo.create_dataset(uid, data=(edit or {}).get((m, uid), fi[uid][()]))
    shutil.copy(src / "manifest.csv", dst / "manifest.csv")
    return dst


def test_any_subset_of_modalities_per_utterance(run_dir: Path, tiny_data: Path, tmp_path: Path) -> None:
    ids = read_split(tiny_data, 1, "tst").ids
    no_v, only_l = ids[0], ids[1]
    part = _copy_set(tiny_data, tmp_path / "part", ids, drop={"v": {no_v, only_l}, "a": {only_l}})
    got = predict(str(run_dir), str(part), batch_size=1000).predictions.set_index("id")
    assert got.loc[no_v, "modalities"] == "al" and got.loc[only_l, "modalities"] == "l"
    assert (got.drop([no_v, only_l])["modalities"] == "avl").all()
    np.testing.assert_allclose(got[PROBS].sum(axis=1), 1.0, atol=1e-5)
    # One batch holding everything: an absent modality is the zero input the model sees when the
    # same utterance is evaluated with that modality masked out.
    full = predict(str(run_dir), str(tiny_data), split="1:tst", conditions="avl,al,l", batch_size=5000).predictions
    full = full.set_index(["id", "modalities"])
    np.testing.assert_allclose(got.loc[no_v, PROBS].to_numpy(np.float64),
                               full.loc[(no_v, "al"), PROBS].to_numpy(np.float64), atol=1e-5)
    np.testing.assert_allclose(got.loc[only_l, PROBS].to_numpy(np.float64),
                               full.loc[(only_l, "l"), PROBS].to_numpy(np.float64), atol=1e-5)
    other = ids[-1]
    np.testing.assert_allclose(got.loc[other, PROBS].to_numpy(np.float64),
                               full.loc[(other, "avl"), PROBS].to_numpy(np.float64), atol=1e-5)
    # A subset never invents a modality: the utterance without A/V has nothing under "a".
    sub = predict(str(run_dir), str(part), conditions="a").predictions
    assert only_l not in set(sub["id"]) and (sub["modalities"] == "a").all()


def test_fold_ensemble_averages_the_folds(run_dir: Path, tiny_data: Path, tmp_path: Path) -> None:
    ens = tmp_path / "ens"
    shutil.copytree(run_dir, ens)
    # A second "fold": the same weights with other A statistics, so its predictions differ.
    ckpt = torch.load(ens / "fold_1" / "best.pt", weights_only=True)
    ckpt["meta"]["fold"] = 2
    ckpt["meta"]["norm_a"]["mean"] = ckpt["meta"]["norm_a"]["mean"] + 1.0
    (ens / "fold_2").mkdir()
    torch.save(ckpt, ens / "fold_2" / "best.pt")
    p1 = predict(str(ens), str(tiny_data), fold=1, split=TST).predictions
    p2 = predict(str(ens), str(tiny_data), fold=2, split=TST).predictions
    both = predict(str(ens), str(tiny_data), split=TST).predictions
    assert not np.allclose(p1[PROBS], p2[PROBS])
    np.testing.assert_allclose(both[PROBS], (p1[PROBS].to_numpy() + p2[PROBS].to_numpy()) / 2, atol=1e-6)
    assert set(both["fold"]) == {"ensemble(1,2)"}
    assert both["pred"].tolist() == both[PROBS].to_numpy().argmax(1).tolist()
    with pytest.raises(PredictionError, match="no checkpoint for fold 3"):
        predict(str(ens), str(tiny_data), fold=3)


def test_registry_versions(run_dir: Path, tiny_data: Path, tmp_path: Path) -> None:
    from mer_lib.registry import UriRegistry

    reg = UriRegistry(str(tmp_path / "reg"))
    uri = str(tmp_path / "reg" / "uf")
    v1 = reg.register("uf", str(run_dir), metrics={"average_ua": 0.3}, data_fingerprint="x", config={})
    with pytest.raises(PredictionError, match=r"no champion yet.*v1"):
        predict(uri, str(tiny_data))
    reg.promote_if_better("uf", v1.number)
    got = predict(uri, str(tiny_data), split=TST).predictions
    assert set(got["model"]) == {"uf"} and set(got["model_version"]) == {"1"}
    ref = predict(str(run_dir), str(tiny_data), split=TST).predictions
    np.testing.assert_allclose(got[PROBS], ref[PROBS], atol=1e-7)
    assert set(predict(uri, str(tiny_data), version="latest", split=TST).predictions["model_version"]) == {"1"}
    with pytest.raises(PredictionError, match=r"unknown version 7 \(registered: v1\)"):
        predict(uri, str(tiny_data), version="7")
    with pytest.raises(PredictionError, match="applies to a registry model"):
        predict(str(run_dir), str(tiny_data), version="1")


def test_bad_feature_inputs(run_dir: Path, tiny_data: Path, tmp_path: Path) -> None:
    ids = read_split(tiny_data, 1, "tst").ids
    with h5py.File(tiny_data / "A" / "comparE.h5", "r") as f:
        bad = f[ids[2]][()].copy()
    bad[0, 0] = np.nan
    nan_set = _copy_set(tiny_data, tmp_path / "nan", ids, edit={("a", ids[2]): bad})
    res = predict(str(run_dir), str(nan_set))
    assert ids[2] not in set(res.predictions["id"]) and len(res.predictions) == len(ids) - 1
    assert res.skipped["id"].tolist() == [ids[2]] and "NaN" in res.skipped["reason"][0]
    # Feature dimensions that do not fit the model.
    spec = FeatureSpec(dims={"a": 10, "v": 342, "l": 1024})
    rng = np.random.default_rng(0)
    for m in MODALITIES:
        write_modality(tmp_path / "dims", spec, m, [("u1", rng.normal(size=(3, spec.dims[m])))])
    with pytest.raises(PredictionError, match=r"feature dimensions a=10 do not match the model \(a=130\)"):
        predict(str(run_dir), str(tmp_path / "dims"))
    with pytest.raises(PredictionError, match="neither a feature set"):
        predict(str(run_dir), str(tmp_path / "nothing-here"))
    with pytest.raises(PredictionError, match="no model here"):
        predict(str(tmp_path / "no-model"), str(tiny_data))
    with pytest.raises(PredictionError, match="--split"):
        predict(str(run_dir), str(tiny_data), split="tst")


def test_synthetic_model_refuses_raw_media(run_dir: Path, tmp_path: Path) -> None:
    write_wav(tmp_path / "x.wav", voice("hap", 0.5, 0))
    with pytest.raises(PredictionError, match="trained on synthetic features"):
        predict(str(run_dir), audio=str(tmp_path / "x.wav"))


def test_absent_policy_and_noise(run_dir: Path, tiny_data: Path) -> None:
    assert absent_policy("nmer", "auto") == "noise" and absent_policy("ifmmin", "auto") == "zeros"
    assert absent_policy("nmer", "zeros") == "zeros"
    with pytest.raises(PredictionError, match="absent='blank'"):
        absent_policy("nmer", "blank")
    zeros = predict(str(run_dir), str(tiny_data), conditions="a,avl", split=TST).predictions
    noisy = predict(str(run_dir), str(tiny_data), conditions="a,avl", absent="noise", split=TST).predictions
    again = predict(str(run_dir), str(tiny_data), conditions="a,avl", absent="noise", split=TST).predictions
    full = zeros["modalities"] == "avl"
    assert (noisy["modalities"] == zeros["modalities"]).all() and set(noisy["absent"]) == {"noise"}
    np.testing.assert_allclose(noisy.loc[full, PROBS], zeros.loc[full, PROBS], atol=1e-6)
    assert not np.allclose(noisy.loc[~full, PROBS], zeros.loc[~full, PROBS], atol=1e-4)
    np.testing.assert_array_equal(noisy[PROBS].to_numpy(), again[PROBS].to_numpy())  # seeded per utterance


def test_single_clip_end_to_end(real: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fs, run, clips = real
    uid = sorted(clips)[3]
    wave_, text = clips[uid]
    write_wav(tmp_path / f"{uid}.wav", wave_)
    out = tmp_path / "one.parquet"
    assert main(["predict", "--model", str(run), "--audio", str(tmp_path / f"{uid}.wav"), "--text", text,
                 "--out", str(out)]) == 0
    got = pd.read_parquet(out)
    assert got["id"].tolist() == [uid] and got["modalities"].tolist() == ["al"]
    assert got["label"].tolist() == [""] and got["model"].tolist() == ["utt_fusion"]
    assert "Utterances predicted: 1" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "one.skipped.csv").empty
    # The raw clip goes through the same extractors and A statistics: the same features written as a
    # feature set (A and L only) give the same prediction.
    from mer_lib.features.api import extract_clip

    settings = read_metadata(fs)["settings"]
    feats = extract_clip(str(tmp_path / f"{uid}.wav"), None, text, settings=settings)
    spec = FeatureSpec(names={"a": "logmel", "v": "landmarks", "l": "minilm"}, dims={"a": 56, "v": 136, "l": 384})
    for m in ("a", "l"):
        write_modality(tmp_path / "clipfs", spec, m, [(uid, feats[m])])
    via_fs = predict(str(run), str(tmp_path / "clipfs")).predictions
    np.testing.assert_allclose(via_fs[PROBS].to_numpy(), got[PROBS].to_numpy(), atol=1e-6)
    # The training fold's A statistics matter: without them the prediction changes.
    from mer_lib.prediction import load_model, predict_clips
    from mer_lib.prediction.inputs import read_feature_set

    loaded = load_model(str(run))
    clipset = read_feature_set(str(tmp_path / "clipfs"), loaded.spec, loaded.label_names)
    loaded.folds[0].mean = np.zeros_like(loaded.folds[0].mean)
    loaded.folds[0].std = np.ones_like(loaded.folds[0].std)
    assert not np.allclose(predict_clips(loaded, clipset)[PROBS].to_numpy(), got[PROBS].to_numpy(), atol=1e-4)


def test_media_list_with_a_bad_clip(real: tuple, tmp_path: Path) -> None:
    _, run, clips = real
    rows = []
    for k, uid in enumerate(sorted(clips)[:3]):
        wave_, text = clips[uid]
        write_wav(tmp_path / "media" / f"{uid}.wav", wave_)
        rows.append({"id": uid, "audio": f"media/{uid}.wav", "transcript": text if k != 1 else "",
                     "label": "sad"})
    (tmp_path / "media" / "broken.wav").write_bytes(b"not a wav file")
    rows.append({"id": "broken", "audio": "media/broken.wav", "transcript": "hello there", "label": ""})
    pd.DataFrame(rows).to_csv(tmp_path / "media.csv", index=False)
    res = predict(str(run), str(tmp_path / "media.csv"))
    got = res.predictions.set_index("id")
    assert sorted(got.index) == sorted(clips)[:3]
    assert got["modalities"].tolist() == ["al", "a", "al"] and set(got["label"]) == {"sad"}
    assert res.skipped["id"].tolist() == ["broken"] and "broken.wav" in res.skipped["reason"][0]
    pred_uri, skip_uri = write_result(res, str(tmp_path / "out.csv"))
    assert pd.read_csv(skip_uri)["id"].tolist() == ["broken"]
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_result(res, str(tmp_path / "out.csv"))
    write_result(res, str(tmp_path / "out.csv"), overwrite=True)
    # Empty media list, unreadable single clip, and a bad --out.
    (tmp_path / "empty.csv").write_text("id,audio,video,transcript\n")
    with pytest.raises(PredictionError, match="lists no utterances"):
        predict(str(run), str(tmp_path / "empty.csv"))
    with pytest.raises(PredictionError, match=r"no utterance could be predicted.*broken\.wav"):
        predict(str(run), audio=str(tmp_path / "media" / "broken.wav"))
    assert main(["predict", "--model", str(run), "--input", str(tmp_path / "media.csv"),
                 "--out", str(tmp_path / "x.json")]) == 2


def test_summary_reports(run_dir: Path, tiny_data: Path) -> None:
    res = predict(str(run_dir), str(tiny_data), conditions="a,avl", split=TST)
    s = summarize(res.predictions, res.skipped, res.info)
    n = len(res.predictions)
    assert s["predictions"] == n and s["utterances"] == n // 2
    assert s["modality_counts"] == {"a": n // 2, "avl": n // 2} and s["modality_share"]["a"] == 0.5
    assert sum(s["label_counts"].values()) == n and abs(sum(s["label_share"].values()) - 1) < 1e-9
    acc = float((res.predictions["pred_label"] == res.predictions["label"]).mean())
    assert s["accuracy"] == pytest.approx(acc)
    m = metrics_of(s)
    assert m["share_modalities_avl"] == 0.5 and m["accuracy_on_labelled"] == pytest.approx(acc, abs=1e-6)
    md, page = render_markdown(s), render_html(s)
    assert "| avl |" in md and "50.0%" in md and "<table>" in page and json.dumps(s)


def test_gcs_model_registry_input_and_output(run_dir: Path, tiny_data: Path, gcs_bucket: str) -> None:
    import io

    from mer_lib import storage
    from mer_lib.registry import UriRegistry

    storage.upload_dir(run_dir, f"{gcs_bucket}/runs/uf")
    storage.upload_dir(tiny_data, f"{gcs_bucket}/data/tiny")
    res = predict(f"{gcs_bucket}/runs/uf", f"{gcs_bucket}/data/tiny", split=TST)
    ref = predict(str(run_dir), str(tiny_data), split=TST).predictions
    np.testing.assert_allclose(res.predictions[PROBS], ref[PROBS], atol=1e-7)
    pred_uri, skip_uri = write_result(res, f"{gcs_bucket}/out/p.parquet")
    back = pd.read_parquet(io.BytesIO(storage.read_bytes(pred_uri)))
    assert back["id"].tolist() == ref["id"].tolist() and storage.exists(skip_uri)
    with pytest.raises(FileExistsError):
        write_result(res, f"{gcs_bucket}/out/p.parquet")
    UriRegistry(f"{gcs_bucket}/reg").register("uf", f"{gcs_bucket}/runs/uf", metrics={"average_ua": 0.3},
                                              data_fingerprint="x", config={})
    got = predict(f"{gcs_bucket}/reg/uf", f"{gcs_bucket}/data/tiny", version="1", split=TST).predictions
    assert set(got["model_version"]) == {"1"} and got["pred"].tolist() == ref["pred"].tolist()


def test_batches_without_text_still_run(run_dir: Path, tiny_data: Path, tmp_path: Path) -> None:
    # The text CNN's widest kernel needs 5 frames: a batch whose clips all lack text is padded to it,
    # not to one frame (which used to crash the forward pass).
    ids = read_split(tiny_data, 1, "tst").ids
    part = _copy_set(tiny_data, tmp_path / "no-text", ids, drop={"l": set(ids)})
    got = predict(str(run_dir), str(part), batch_size=3).predictions
    assert len(got) == len(ids) and (got["modalities"] == "av").all()
    np.testing.assert_allclose(got[PROBS].sum(axis=1), 1.0, atol=1e-5)
