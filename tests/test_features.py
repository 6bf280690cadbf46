"""Feature extraction from raw media: a miniature IEMOCAP release built at test time (5 sessions x
2 actors x 2 utterances), extracted with the real extractors (log-mel, dlib landmarks, MiniLM)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from mer_lib.data.featureset import FeatureStore, fingerprint, read_metadata, read_split, spec_for
from mer_lib.data.folds import check_folds
from mer_lib.features.api import extract, extract_clip, merge
from mer_lib.features.extractors import ExtractorChoice
from mer_lib.features.iemocap import SideRule, parse_emo_evaluation, parse_wdseg
from mer_lib.features.media import load_video_frames
from mer_lib.features.merge import SkipFractionError
from mer_lib.features.visual import normalise_landmarks
from tests.fixtures.raw_iemocap import PROSODY, build_raw_iemocap, voice

CHOICE = ExtractorChoice(upsample=0)  # the fixture's faces are 73 px: no HOG upsampling needed
DUR = 1.0


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("raw") / "IEMOCAP_full_release"
    return root, build_raw_iemocap(root, per_speaker=2, duration=DUR)


@pytest.fixture(scope="module")
def single(raw: tuple, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    base = tmp_path_factory.mktemp("single")
    summary = extract("iemocap", str(raw[0]), str(base / "fs"), choice=CHOICE, work_dir=base / "work")
    return base, summary


def test_feature_set_shapes_rates_and_metadata(raw: tuple, single: tuple) -> None:
    base, summary = single
    fs = base / "fs"
    assert summary["extracted"] == 20 and summary["cached"] == 0
    meta = read_metadata(fs)
    assert meta["spec"] == {"names": {"a": "logmel", "v": "landmarks", "l": "minilm"},
                            "dims": {"a": 56, "v": 136, "l": 384}}
    s = meta["settings"]
    assert s["a"]["frame_rate_hz"] == 10.0 and s["v"]["fps"] == 10.0 and s["l"]["model"] == "minilm"
    assert "NON-COMMERCIAL" not in meta["licences"]["a"]["licence"]
    assert "iBUG 300-W" in meta["licences"]["v"]["licence"] and "Apache-2.0" in meta["licences"]["l"]["licence"]
    store = FeatureStore(fs)
    assert len(store) == 20 and sorted(store.ids) == sorted(raw[1])
    i = store.index["Ses01F_impro01_F000"]
    # 1.0 s: 100 ms acoustic frames (101 centred 10 ms frames / 10, rounded up) and 10 video frames at 10 fps.
    assert store.seq("a", i).shape == (11, 56)
    assert store.seq("v", i).shape == (10, 136)
    assert store.seq("l", i).shape == (6, 384)  # "i am so angry about this": 6 word-pieces, no [CLS]/[SEP]
    assert check_folds(fs) == [] and len(list((fs / "target").iterdir())) == 10
    tst = read_split(fs, 1, "tst")
    assert {u[:6] + u[-4] for u in tst.ids} == {"Ses01FF"}
    manifest = pd.read_csv(fs / "manifest.csv")
    assert (manifest["no_face_frames_v"] == 0).all() and (manifest["frames_v"] == 10).all()
    codes = dict(zip(manifest["id"], manifest["label_code"], strict=True))
    assert codes == raw[1]
    assert dict(zip(manifest["id"], manifest["label"], strict=True))["Ses01F_impro01_M001"] == 0  # exc -> happy
    with h5py.File(fs / "A" / "logmel_mean_std.h5") as f:
        assert sorted(f.keys(), key=int) == [str(k) for k in range(1, 11)] and f["1"]["mean"].shape == (56,)


def test_synthetic_emotions_differ_in_prosody(raw: tuple, single: tuple) -> None:
    store = FeatureStore(single[0] / "fs")
    f0_col, energy_col = 40 + 13 + 1, 40 + 13
    by_code: dict[str, list] = {}
    for uid, code in raw[1].items():
        x = store.seq("a", store.index[uid])
        by_code.setdefault(code, []).append((x[:, f0_col].mean(), x[:, energy_col].mean()))
    mean = {c: np.mean(v, axis=0) for c, v in by_code.items()}
    assert mean["hap"][0] > mean["neu"][0] > mean["sad"][0]
    assert mean["ang"][1] > mean["sad"][1]
    # The voiced F0 of the 10 ms frames recovers the synthesis F0 (a contour within +-6% of it).
    from mer_lib.features.acoustic import LogMelExtractor

    lm = LogMelExtractor()
    f0 = lm.frames_10ms(voice("sad", DUR, seed=3))[:, lm.f0_column]
    assert abs(np.median(f0[f0 > 0]) - PROSODY["sad"][0]) < 0.07 * PROSODY["sad"][0]


def test_resume_does_no_work_and_gives_the_same_set(raw: tuple, single: tuple) -> None:
    base, _ = single
    again = extract("iemocap", str(raw[0]), str(base / "fs2"), choice=CHOICE, work_dir=base / "work")
    assert again["extracted"] == 0 and again["cached"] == 20
    assert fingerprint(base / "fs2") == fingerprint(base / "fs")
    with pytest.raises(FileExistsError):
        extract("iemocap", str(raw[0]), str(base / "fs"), choice=CHOICE, work_dir=base / "work")


def test_shards_merge_to_the_single_run(raw: tuple, single: tuple) -> None:
    base, _ = single
    parts = []
    for i in range(3):
        r = extract("iemocap", str(raw[0]), str(base / f"part{i}"), choice=CHOICE, work_dir=base / "work",
                    shard=f"{i}/3")
        parts.append(str(base / f"part{i}"))
        assert r["partial"]["shard"] == [i, 3]
    assert sum(json.loads((base / f"part{i}" / "partial.json").read_text())["counts"]["complete"]
               for i in range(3)) == 20
    with pytest.raises(ValueError, match="1/3 missing"):
        merge([parts[0], parts[2]], str(base / "merged"))
    merge(parts, str(base / "merged"))
    assert fingerprint(base / "merged") == fingerprint(base / "fs")
    with h5py.File(base / "merged" / "V" / "landmarks.h5") as a, h5py.File(base / "fs" / "V" / "landmarks.h5") as b:
        assert all(np.array_equal(a[k][()], b[k][()]) for k in b)


def test_skip_report_and_fraction(tmp_path) -> None:
    raw = tmp_path / "raw"
    build_raw_iemocap(raw, per_speaker=1, duration=DUR, add_faults=True)
    with pytest.raises(SkipFractionError, match="6 of 16"):
        extract("iemocap", str(raw), str(tmp_path / "fail"), choice=CHOICE, work_dir=tmp_path / "work")
    assert not (tmp_path / "fail").exists()  # nothing half-published
    assert (tmp_path / "work" / "skip_report.csv").exists()
    r = extract("iemocap", str(raw), str(tmp_path / "fs"), choice=CHOICE, work_dir=tmp_path / "work",
                max_skip_fraction=0.5)
    assert r["extracted"] == 0  # the failed run's work was kept
    rep = pd.read_csv(tmp_path / "fs" / "skip_report.csv")
    got = {(row.id[-4:], row.modality, row.category): row.reason for row in rep.itertuples()}
    assert set(got) == {("F900", "a", "skipped"), ("M901", "a", "skipped"), ("F902", "l", "skipped"),
                        ("M903", "label", "skipped"), ("Q904", "all", "skipped"), ("F905", "v", "skipped"),
                        ("M906", "label", "excluded")}
    assert "zero-length audio" in got[("F900", "a", "skipped")]
    assert "missing media" in got[("M901", "a", "skipped")]
    assert got[("F902", "l", "skipped")] == "empty transcript"
    assert "unknown label code 'zzz'" in got[("M903", "label", "skipped")]
    assert "IEMOCAP pattern" in got[("Q904", "all", "skipped")]
    assert "without a detectable face" in got[("F905", "v", "skipped")]
    meta = read_metadata(tmp_path / "fs")
    assert meta["counts"] == {"utterances": 10, "skipped": 6, "excluded": 1, "skip_fraction": 0.375}
    assert len(FeatureStore(tmp_path / "fs")) == 10


def test_media_list_source_and_clip_api(raw: tuple, single: tuple, tmp_path) -> None:
    root, labels = raw
    names = {"hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad", "neu": "neutral"}
    rows = []
    for uid, code in sorted(labels.items()):
        s, dialog = uid[4], uid.rsplit("_", 1)[0]
        trans = (root / f"Session{s}/dialog/transcriptions/{dialog}.txt").read_text().splitlines()
        line = next(t for t in trans if t.startswith(uid))
        start, end = (float(x) for x in line.split("[")[1].split("]")[0].split("-"))
        rows.append({"id": uid, "speaker": uid[:6] + uid[-4], "session": uid[:5], "label": names[code],
                     "audio": str(root / f"Session{s}/dialog/wav/{dialog}.wav"),
                     "video": str(root / f"Session{s}/dialog/avi/DivX/{dialog}.avi"), "start": start, "end": end,
                     "side": "left" if uid[-4] == "F" else "right", "transcript": line.split("]: ", 1)[1]})
    rows.append({**rows[0], "id": "extra_missing", "audio": "nowhere.wav"})
    csv = tmp_path / "data" / "media.csv"
    csv.parent.mkdir()
    pd.DataFrame(rows).to_csv(csv, index=False)
    r = extract("media_list", str(csv), str(tmp_path / "fs"), modalities="a,l", choice=CHOICE,
                work_dir=tmp_path / "work", max_skip_fraction=0.1)
    assert r["extracted"] == 20
    spec = spec_for(tmp_path / "fs")
    assert spec.names == {"a": "logmel", "l": "minilm"}
    assert not (tmp_path / "fs" / "V").exists()
    rep = pd.read_csv(tmp_path / "fs" / "skip_report.csv")
    assert rep["id"].tolist() == ["extra_missing"] and "nowhere.wav" in rep["reason"][0]
    assert read_metadata(tmp_path / "fs")["source"]["type"] == "media_list"
    # The media list cuts the dialog wav where IEMOCAP's set read the utterance wav: same samples, same
    # features; and a single clip processed with the set's settings reproduces the IEMOCAP set's.
    ref = FeatureStore(single[0] / "fs")
    got = FeatureStore(tmp_path / "fs", modalities=("a", "l"))
    uid = "Ses02F_impro01_M001"
    np.testing.assert_array_equal(got.seq("a", got.index[uid]), ref.seq("a", ref.index[uid]))
    settings = read_metadata(single[0] / "fs")["settings"]
    row = next(x for x in rows if x["id"] == uid)
    clip = extract_clip(row["audio"], row["video"], row["transcript"], settings=settings, side="right",
                        start=row["start"], end=row["end"])
    np.testing.assert_allclose(clip["a"], ref.seq("a", ref.index[uid]), rtol=1e-6)
    np.testing.assert_allclose(clip["v"], ref.seq("v", ref.index[uid]), rtol=1e-5)
    np.testing.assert_allclose(clip["l"], ref.seq("l", ref.index[uid]), atol=1e-5)
    assert clip["v_face"].all()


def test_video_sampling_and_landmark_normalisation(raw: tuple) -> None:
    avi = raw[0] / "Session3/dialog/avi/DivX/Ses03F_impro01.avi"
    v = load_video_frames(avi, fps=10, start=1.7, end=2.9, side="right")
    assert v.images.shape == (12, 176, 176, 3)
    np.testing.assert_allclose(np.diff(v.times), 0.1)
    assert load_video_frames(avi, fps=5, start=1.7, end=2.9).images.shape == (6, 176, 352, 3)
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2))
    a = np.deg2rad(20)
    moved = 3.0 * pts @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]).T + [40.0, -7.0]
    np.testing.assert_allclose(normalise_landmarks(moved), normalise_landmarks(pts), atol=1e-5)
    assert SideRule("gender").side("Ses01M_script01_1_F003") == "left"
    assert SideRule("marker", marker_side="right").side("Ses01M_script01_1_F003") == "left"


def test_release_text_parsers(raw: tuple) -> None:
    root = raw[0]
    turns = parse_emo_evaluation((root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt").read_text())
    assert turns[0] == ("Ses01F_impro01_F000", raw[1]["Ses01F_impro01_F000"], 0.3, 1.3)
    words = parse_wdseg((root / "Session1/sentences/ForcedAlignment/Ses01F_impro01/Ses01F_impro01_F000.wdseg")
                        .read_text())
    assert [w for _, _, w in words] == ["I", "AM", "SO", "ANGRY", "ABOUT", "THIS"]
    assert words[0][0] == 0.05 and all(b > a for a, b, _ in words)
    assert parse_wdseg("\t0\t10\t-5 <s>\n\t11\t30\t-9 HELLO(2)\n\t31\t40\t-5 <sil>\n") == [(0.11, 0.31, "HELLO")]


def test_cli_extract_and_errors(raw: tuple, tmp_path, capsys) -> None:
    from mer_lib.cli import main

    args = ["extract", "--source", "iemocap", "--input", str(raw[0]), "--modalities", "a",
            "--work-dir", str(tmp_path / "w")]
    assert main([*args, "--out", str(tmp_path / "p0"), "--shard", "0/2", "--workers", "2"]) == 0  # process pool
    assert main([*args, "--out", str(tmp_path / "p1"), "--shard", "1/2"]) == 0
    assert main(["extract", "--out", str(tmp_path / "fs"), "--merge", str(tmp_path / "p0"), str(tmp_path / "p1")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["counts"]["utterances"] == 20 and out["spec"]["dims"] == {"a": 56}
    assert main([*args, "--out", str(tmp_path / "x"), "--shard", "2/2"]) == 2
    assert "need 0 <= i < n" in capsys.readouterr().err


def test_compare_streams_are_aligned_and_downsampled() -> None:
    pytest.importorskip("opensmile")
    from mer_lib.features.acoustic import CompareExtractor

    ce = CompareExtractor()
    sig = voice("hap", DUR, seed=1)
    x10 = ce.frames_10ms(sig)
    lld = ce._lld.process_signal(sig, 16000)
    assert x10.shape == (lld.index.get_level_values("start").drop_duplicates().size, 130)
    assert ce.columns[0] == "F0final_sma" and ce.columns[65] == "F0final_sma_de"
    # openSMILE's delta is the W=2 regression of its LLD: it holds only when row t of both halves is
    # the same 10 ms frame (a one-frame shift, as positional concatenation gives, breaks it).
    col = ce.columns.index("audSpec_Rfilt_sma[10]")
    lld_c, de_c = x10[:, col].astype(np.float64), x10[:, col + 65]

    def regression(c: np.ndarray) -> np.ndarray:
        p = np.pad(c, 2, mode="edge")
        return (p[3:-1] - p[1:-3] + 2 * (p[4:] - p[:-4])) / 10.0

    inner = slice(3, -3)
    np.testing.assert_allclose(regression(lld_c)[inner], de_c[inner], atol=1e-4)
    assert np.abs(regression(np.roll(lld_c, 1))[inner] - de_c[inner]).max() > 0.05
    x = ce(sig)
    assert x.shape == (int(np.ceil(len(x10) / 10)), 130)
    f0_hap, f0_sad = ce.frames_10ms(voice("hap", DUR, 2))[:, 0], ce.frames_10ms(voice("sad", DUR, 2))[:, 0]
    assert f0_hap[f0_hap > 0].mean() > 1.5 * f0_sad[f0_sad > 0].mean()
