"""Data layer: loading once, collate/padding/normalisation/masks, folds, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mer_lib.conditions import MISSING_CONDITIONS, condition_mask
from mer_lib.data.dataset import FoldData
from mer_lib.data.featureset import (
    FeatureSetError,
    FeatureStore,
    fingerprint,
    parse_iemocap_id,
    read_manifest,
    read_mean_std,
    read_split,
    write_modality,
)
from mer_lib.data.folds import check_folds, speaker_folds
from tests.helpers_data import SPEC, make_featureset


@pytest.fixture()
def fs(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "fs"
    return root, make_featureset(root)


def test_store_loads_each_utterance_once_and_folds_share_it(fs: tuple[Path, dict]) -> None:
    root, items = fs
    store = FeatureStore(root, SPEC)
    assert len(store) == 30 and store.data["v"].shape == (30 * 6, 3)
    uid = sorted(items)[4]
    np.testing.assert_array_equal(store.seq("a", store.index[uid]), items[uid][0])
    f1, f2 = FoldData(store, 1), FoldData(store, 2)
    assert f1.store.data["a"] is f2.store.data["a"]  # no copy per fold or split
    assert store.true_lengths["l"].max() == 5 and store.lengths["l"].max() == 7


def test_collate_pads_to_batch_max_and_normalises_a_with_train_stats(fs: tuple[Path, dict]) -> None:
    root, items = fs
    fd = FoldData(FeatureStore(root, SPEC), 1)
    mean, std = read_mean_std(root, SPEC, 1)
    batch = next(iter(fd.loader("tst", batch_size=3, conditions="full")))
    lens = [len(items[u][0]) for u in batch.ids]
    assert batch.a.shape == (3, max(lens), 4)
    for b, uid in enumerate(batch.ids):
        raw = items[uid][0]
        np.testing.assert_allclose(batch.a[b, : len(raw)].numpy(), (raw - mean) / std, rtol=1e-5, atol=1e-5)
        assert float(batch.a[b, len(raw):].abs().sum()) == 0.0  # pads are zeros in normalised space
        np.testing.assert_array_equal(batch.v[b].numpy(), items[uid][1])  # V/L used as stored
    assert batch.lengths[:, 0].tolist() == lens
    assert batch.mask.tolist() == [[1.0, 1.0, 1.0]] * 3
    # the train statistics are those of the trn speakers only
    trn = fd.splits["trn"].ids
    frames = np.concatenate([items[u][0] for u in trn])
    np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-4)


def test_replicated_evaluation_set_orders_utterance_then_condition(fs: tuple[Path, dict]) -> None:
    root, _ = fs
    fd = FoldData(FeatureStore(root, SPEC), 1)
    loader = fd.loader("val", batch_size=100, conditions=list(MISSING_CONDITIONS))
    batch = next(iter(loader))
    n = len(fd.splits["val"].ids)
    assert len(batch) == 6 * n and loader.num_items() == 6 * n
    assert batch.conditions()[:6] == list(MISSING_CONDITIONS)
    assert batch.ids[:6] == [fd.splits["val"].ids[0]] * 6


def test_training_conditions_are_random_missing_reproducible_per_epoch(fs: tuple[Path, dict]) -> None:
    root, _ = fs
    fd = FoldData(FeatureStore(root, SPEC), 1)
    loader = fd.loader("trn", batch_size=50, conditions="random_missing", shuffle=True, seed=5)

    def draw(epoch: int) -> tuple[list[str], list[str]]:
        loader.set_epoch(epoch)
        b = next(iter(loader))
        return b.ids, b.conditions()

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)
    ids, conds = draw(0)
    assert "avl" not in conds and set(conds) <= set(MISSING_CONDITIONS) and len(set(conds)) >= 4
    assert sorted(ids) == sorted(fd.splits["trn"].ids)


def test_speaker_independent_folds(fs: tuple[Path, dict]) -> None:
    root, _ = fs
    assert check_folds(root) == []
    for k in range(1, 11):
        spk = {s: {parse_iemocap_id(u)[1] for u in read_split(root, k, s).ids} for s in ("trn", "val", "tst")}
        assert len(spk["tst"]) == 1 and len(spk["val"]) == 1 and len(spk["trn"]) == 8
        (t,), (v,) = spk["tst"], spk["val"]
        assert t[:5] == v[:5] and t != v  # validation = the other speaker of the same session
    assert read_split(root, 1, "tst").ids[0].startswith("Ses01") and "_F" in read_split(root, 1, "tst").ids[0]


def test_fold_checker_reports_leaks(fs: tuple[Path, dict]) -> None:
    root, _ = fs
    d = root / "target" / "1"
    names = np.load(d / "val_int2name.npy", allow_pickle=True)
    labels = np.load(d / "val_label.npy")
    trn = np.load(d / "trn_int2name.npy", allow_pickle=True)
    np.save(d / "val_int2name.npy", np.concatenate([names, trn[:1]]))
    np.save(d / "val_label.npy", np.concatenate([labels, np.eye(4, dtype=np.float32)[:1]]))
    problems = check_folds(root)
    assert any("in both trn and val" in p for p in problems)
    assert any("speaker(s)" in p and "trn and val" in p for p in problems)


def test_manifest_and_fingerprint(fs: tuple[Path, dict]) -> None:
    root, items = fs
    df = read_manifest(root)
    assert list(df.columns[:5]) == ["id", "session", "speaker", "gender", "label"]
    assert len(df) == 30 and set(df.speaker) == {f"Ses0{s}_{g}" for s in range(1, 6) for g in "FM"}
    meta = json.loads((root / "featureset.json").read_text())
    assert meta["fingerprint"] == fingerprint(root, SPEC)
    with h5py.File(root / "L" / "bert_large.h5", "a") as f:
        f[sorted(items)[0]][0, 0] += 1.0
    assert fingerprint(root, SPEC) != meta["fingerprint"]


def test_speaker_folds_need_three_speakers() -> None:
    with pytest.raises(FeatureSetError, match="at least 3 speakers"):
        speaker_folds({"x": "s1", "y": "s2"}, {"x": 1, "y": 1})


# ----------------------------------------------------------------------------------- bad input


def test_missing_modality_file(fs: tuple[Path, dict]) -> None:
    root, _ = fs
    (root / "V" / "denseface.h5").unlink()
    with pytest.raises(FeatureSetError, match=r"V/denseface.h5: missing modality file for V"):
        FeatureStore(root, SPEC)


def test_utterance_in_labels_but_not_in_features(fs: tuple[Path, dict]) -> None:
    root, items = fs
    uid = read_split(root, 1, "tst").ids[0]
    with h5py.File(root / "L" / "bert_large.h5", "a") as f:
        del f[uid]
    needle = rf"bert_large.h5: utterance '{uid}' is in the fold lists but has no features"
    with pytest.raises(FeatureSetError, match=needle):
        FeatureStore(root, SPEC, ids=sorted(items))


@pytest.mark.parametrize("bad,needle", [
    (np.ones((3, 9), np.float32), "feature dimension 9, expected 4"),
    (np.full((3, 4), np.nan, np.float32), "contains NaN or inf"),
    (np.full((3, 4), np.inf, np.float32), "contains NaN or inf"),
    (np.zeros((0, 4), np.float32), "empty sequence"),
])
def test_bad_feature_values_are_rejected_on_read_and_write(fs: tuple[Path, dict], bad: np.ndarray, needle: str) -> None:
    root, items = fs
    uid = sorted(items)[2]
    with h5py.File(root / "A" / "comparE.h5", "a") as f:
        del f[uid]
        f.create_dataset(uid, data=bad)
    with pytest.raises(FeatureSetError, match=needle) as err:
        FeatureStore(root, SPEC)
    assert uid in str(err.value) and "comparE.h5" in str(err.value)
    out = root.parent / "other"
    with pytest.raises(FeatureSetError, match=needle):
        write_modality(out, SPEC, "a", [(uid, bad)])


def test_label_rows_must_be_one_hot(fs: tuple[Path, dict]) -> None:
    root, _ = fs
    p = root / "target" / "2" / "tst_label.npy"
    lab = np.load(p)
    lab[1] = [0.5, 0.5, 0, 0]
    np.save(p, lab)
    with pytest.raises(FeatureSetError, match=r"tst_label.npy: row 1 .* is not one-hot"):
        read_split(root, 2, "tst")
    lab[1] = [0, 0, 0, 0]
    np.save(p, lab)
    with pytest.raises(FeatureSetError, match="not one-hot"):
        read_split(root, 2, "tst")
    np.save(p, lab[:, :3])
    with pytest.raises(FeatureSetError, match="3 label columns, expected 4"):
        read_split(root, 2, "tst", num_classes=4)


def test_missing_fold_is_named(fs: tuple[Path, dict]) -> None:
    root, _ = fs
    with pytest.raises(FeatureSetError, match="fold 11 is missing"):
        FoldData(FeatureStore(root, SPEC), 11)


def test_bad_ids_and_conditions() -> None:
    assert parse_iemocap_id("Ses03M_script01_2b_F012") == (3, "Ses03_F", "F")
    with pytest.raises(FeatureSetError, match="does not follow the IEMOCAP pattern"):
        parse_iemocap_id("speaker7_utt1")
    assert condition_mask("al") == (1, 0, 1)
    with pytest.raises(ValueError, match="unknown condition 'x'"):
        condition_mask("x")


def test_fold_check_cli(fs: tuple[Path, dict], capsys: pytest.CaptureFixture[str]) -> None:
    from mer_lib.cli import main

    root, _ = fs
    assert main(["folds", "check", str(root)]) == 0
    assert "OK 10 folds" in capsys.readouterr().out
    (root / "target" / "3" / "val_label.npy").unlink()
    assert main(["folds", "check", str(root)]) == 1
    assert "val_label.npy: missing fold file" in capsys.readouterr().out


def test_feature_set_open_is_the_one_reader(tiny_data: Path, tmp_path: Path) -> None:
    import shutil

    from mer_lib.data.featureset import FeatureSet, FeatureSetError, FeatureSpec, is_feature_set

    fs = FeatureSet.open(tiny_data)
    assert fs.label_names == ("happy", "angry", "sad", "neutral") and fs.folds() == list(range(1, 11))
    assert fs.fingerprint() == json.loads((tiny_data / "featureset.json").read_text())["fingerprint"]
    assert len(fs.store()) == 80 and is_feature_set(tiny_data)
    # a released folder (no featureset.json): the given spec, and as many IEMOCAP names as classes
    released = tmp_path / "released"
    shutil.copytree(tiny_data, released)
    (released / "featureset.json").unlink()
    bare = FeatureSet.open(released, spec=FeatureSpec(), num_classes=2)
    assert bare.label_names == ("happy", "angry") and bare.spec == FeatureSpec()
    assert bare.fingerprint() == fs.fingerprint()  # computed from the same files
    assert is_feature_set(released) and not is_feature_set(tmp_path) and not is_feature_set(tmp_path / "nothing")
    with pytest.raises(FeatureSetError, match="not a feature-set directory"):
        FeatureSet.open(tmp_path / "nothing")
