"""The noise library: closed form, determinism, masking, noise-type shapes, errors and ``mer noise``."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from mer_lib.cli import main
from mer_lib.config import ConfigError, NoiseConfig
from mer_lib.data.dataset import Batch, FoldData
from mer_lib.data.featureset import FeatureStore, fingerprint, read_metadata
from mer_lib.noise import (
    DiffusionSchedule,
    NoiseCurriculum,
    NoiseInjector,
    beta_schedule,
    check_modalities_present,
    check_noise_config,
)
from mer_lib.noise.corruptions import drop_frames, zero_bursts
from mer_lib.noise.noisy_copy import write_noisy_featureset

DIMS = {"a": 6, "v": 5, "l": 7}


def make_items(n: int, seed: int = 0) -> list[dict]:
    """Utterances with different true lengths (a: 3..8 frames, v: 2..6, l: 5..9)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        lens = {"a": 3 + (i * 5) % 6, "v": 2 + (i * 3) % 5, "l": 5 + (i * 2) % 5}
        items.append({"id": f"utt{i}", "lens": lens,
                      **{m: torch.randn(lens[m], DIMS[m], generator=g) + 2.0 for m in DIMS}})
    return items


def collate(items: list[dict], masks: list[list[float]]) -> Batch:
    """Zero-pad each modality to the batch maximum, like the real loader."""
    feats = {}
    for m in "avl":
        t = max(it["lens"][m] for it in items)
        x = torch.zeros(len(items), t, items[0][m].shape[1])
        for b, it in enumerate(items):
            x[b, :it["lens"][m]] = it[m]
        feats[m] = x
    lengths = torch.tensor([[it["lens"][m] for m in "avl"] for it in items])
    return Batch(a=feats["a"], v=feats["v"], l=feats["l"], mask=torch.tensor(masks, dtype=torch.float32),
                 lengths=lengths, label=torch.zeros(len(items), dtype=torch.long),
                 index=torch.arange(len(items)), ids=[it["id"] for it in items])


MASKS = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]]


# ------------------------------------------------------------------------------------ schedules

def test_scaled_linear_schedule_matches_closed_form_and_spec_numbers() -> None:
    betas = beta_schedule("scaled_linear", 0.01, 0.5, 100)
    np.testing.assert_allclose(betas, np.linspace(0.1, np.sqrt(0.5), 100) ** 2, rtol=1e-12)
    sched = DiffusionSchedule.create("scaled_linear", 0.01, 0.5, 100)
    abar = np.cumprod(1 - betas)
    np.testing.assert_allclose(sched.alphas_cumprod, abar, rtol=1e-12)
    # spec 5.3: signal coefficient 0.995 at t=0, 0.92 at t=9, 0.77 at t=19, mean 0.32; T=20 mean 0.61
    sig = np.sqrt(abar)
    assert sig[0] == pytest.approx(0.995, abs=5e-4)
    assert sig[9] == pytest.approx(0.92, abs=5e-3)
    assert sig[19] == pytest.approx(0.77, abs=5e-3)
    assert sig.mean() == pytest.approx(0.32, abs=5e-3)
    assert (sig < 0.1).mean() == pytest.approx(0.46, abs=0.01)
    sig20 = np.sqrt(DiffusionSchedule.create("scaled_linear", 0.01, 0.5, 20).alphas_cumprod)
    assert sig20.mean() == pytest.approx(0.61, abs=5e-3)
    assert (sig20 < 0.1).mean() == pytest.approx(0.05, abs=1e-9)
    # x_t for a fixed eps, scalar t and one t per row
    x, eps = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    for t in (0, 37, 99):
        want = np.sqrt(abar[t]) * x.numpy() + np.sqrt(1 - abar[t]) * eps.numpy()
        np.testing.assert_allclose(sched.add_noise(x, eps, t).numpy(), want, rtol=1e-5, atol=1e-6)
    ts = torch.tensor([0, 50, 99])
    got = sched.add_noise(x, eps, ts).numpy()
    for r, t in enumerate(ts.tolist()):
        want = np.sqrt(abar[t]) * x[r].numpy() + np.sqrt(1 - abar[t]) * eps[r].numpy()
        np.testing.assert_allclose(got[r], want, rtol=1e-5, atol=1e-6)


def test_other_schedules() -> None:
    np.testing.assert_allclose(beta_schedule("linear", 0.1, 0.3, 3), [0.1, 0.2, 0.3])
    sig = beta_schedule("sigmoid", 0.01, 0.5, 50)
    assert np.all(np.diff(sig) > 0) and 0.01 < sig[0] < sig[-1] < 0.5
    assert sig[0] == pytest.approx(0.01 + 0.49 / (1 + np.exp(6)))
    cos = DiffusionSchedule.create("squaredcos_cap_v2", 0.01, 0.5, 100)
    assert cos.betas.max() <= 0.999 and cos.alphas_cumprod[-1] < 1e-4 and cos.alphas_cumprod[0] > 0.999
    assert DiffusionSchedule.create("linear", 0.2, 0.2, 1).max_step(1.0) == 1
    sched = DiffusionSchedule.create("scaled_linear", 0.01, 0.5, 100)
    assert [sched.max_step(v) for v in (0.0, 0.2, 0.201, 1.0)] == [1, 20, 21, 100]


# ------------------------------------------------------------------------------------- injector

def test_injector_gaussian_closed_form_with_one_step() -> None:
    # T = 1: t = 0 and abar_0 = 1 - beta_start, so eps = (y - sqrt(0.99) x) / 0.1 must be N(0, 1)
    items = make_items(6)
    batch = collate(items, [[1, 0, 0]] * 6)
    out = NoiseInjector(NoiseConfig(steps=1), seed=5).apply(batch, epoch=0, train=True)
    for m in ("v", "l"):
        x, y = getattr(batch, m), getattr(out, m)
        real = torch.arange(x.shape[1])[None, :] < batch.lengths[:, "avl".index(m)][:, None]
        eps = ((y - np.sqrt(0.99) * x) / 0.1)[real]
        assert abs(float(eps.mean())) < 0.15 and float(eps.std()) == pytest.approx(1.0, abs=0.1)
        assert torch.equal(y[~real], x[~real])  # padding stays clean by default
    assert torch.equal(out.a, batch.a)


def test_only_missing_target_modalities_change_and_mask_becomes_available() -> None:
    items = make_items(6)
    batch = collate(items, MASKS)
    cfg = NoiseConfig(modalities=["a", "v"])
    for train in (False, True):
        out = NoiseInjector(cfg).apply(batch, epoch=3, train=train)
        for j, m in enumerate("avl"):
            x, y = getattr(batch, m), getattr(out, m)
            for b in range(6):
                changed = not torch.equal(x[b], y[b])
                assert changed == (MASKS[b][j] == 0 and m != "l"), (train, m, b)
        want = torch.tensor(MASKS, dtype=torch.float32)
        want[:, :2] = 1.0  # a, v corrupted -> available; l stays missing (not a target)
        assert torch.equal(out.mask, want)
    assert torch.equal(batch.mask, torch.tensor(MASKS, dtype=torch.float32))  # input untouched


def test_noise_pads_option_corrupts_batch_padding() -> None:
    items = make_items(4)
    batch = collate(items, [[1, 0, 1]] * 4)
    out = NoiseInjector(NoiseConfig(noise_pads=True)).apply(batch, train=True, epoch=0)
    pads = torch.arange(batch.v.shape[1])[None, :] >= batch.lengths[:, 1][:, None]
    assert pads.any() and (out.v[pads] != 0).all()


def test_same_seed_bit_identical_and_other_seed_differs() -> None:
    batch = collate(make_items(6), MASKS)
    for kind in ("gaussian", "impulse", "frame_drop", "burst", "mixture"):
        cfg = NoiseConfig(type=kind, mixture=["gaussian", "burst"], per_sample_t=kind == "mixture",
                          burst_len=2, drop_rate=0.5)
        for train in (False, True):
            a = NoiseInjector(cfg, seed=7).apply(batch, epoch=2, train=train)
            b = NoiseInjector(cfg, seed=7).apply(batch, epoch=2, train=train)
            c = NoiseInjector(cfg, seed=8).apply(batch, epoch=2, train=train)
            for m in "avl":
                assert torch.equal(getattr(a, m), getattr(b, m)), (kind, train, m)
            assert any(not torch.equal(getattr(a, m), getattr(c, m)) for m in "avl"), (kind, train)
    # training noise changes with the epoch
    inj = NoiseInjector(NoiseConfig(), seed=7)
    assert not torch.equal(inj.apply(batch, epoch=0, train=True).v, inj.apply(batch, epoch=1, train=True).v)


def test_fresh_eval_noise_is_not_repeatable() -> None:
    batch = collate(make_items(3), [[1, 0, 0]] * 3)
    inj = NoiseInjector(NoiseConfig(fresh_eval_noise=True), seed=7)
    assert not torch.equal(inj.apply(batch).v, inj.apply(batch).v)


def test_eval_noise_independent_of_batch_composition() -> None:
    items = make_items(8)
    cfg = NoiseConfig(type="mixture", mixture=["gaussian", "impulse", "frame_drop", "burst"])
    inj = NoiseInjector(cfg, steps=40, seed=3)
    full = inj.apply(collate(items, [MASKS[i % 6] for i in range(8)]))
    # the same items in another order, in smaller batches, next to other utterances
    order = [5, 2, 7, 0]
    others = make_items(12, seed=9)[8:]
    sub = inj.apply(collate([items[i] for i in order] + others, [MASKS[i % 6] for i in order] + [[0, 0, 1]] * 4))
    for pos, i in enumerate(order):
        for j, m in enumerate("avl"):
            n = int(full.lengths[i, j])
            assert int(sub.lengths[pos, j]) == n
            assert torch.equal(getattr(full, m)[i, :n], getattr(sub, m)[pos, :n]), (i, m)
    # a different condition of the same utterance gets different noise
    other = inj.apply(collate([items[0]], [[0, 1, 0]]))
    same = inj.apply(collate([items[0]], [[1, 0, 0]]))
    assert not torch.equal(other.l[0], same.l[0])


def test_zero_fill_share_leaves_some_missing_modalities_missing_in_training_only() -> None:
    """``zero_fill_share``: that share of the missing rows keeps mask 0 and its input (the model zero-fills
    it, as the six-condition protocol does); the rest is noised as before; evaluation noise ignores it."""
    items = make_items(60)
    masks = [MASKS[i % 6] for i in range(60)]
    batch = collate(items, masks)
    plain = NoiseInjector(NoiseConfig(), seed=3).apply(batch, epoch=1, train=True)
    half = NoiseInjector(NoiseConfig(zero_fill_share=0.5), seed=3).apply(batch, epoch=1, train=True)
    again = NoiseInjector(NoiseConfig(zero_fill_share=0.5), seed=3).apply(batch, epoch=1, train=True)
    assert torch.equal(half.mask, again.mask) and torch.equal(half.a, again.a)  # seeded
    missing = batch.mask < 0.5
    left = missing & (half.mask < 0.5)
    assert torch.all(plain.mask == 1.0) and 0.3 < left.sum() / missing.sum() < 0.7, left.sum()
    for j, m in enumerate("avl"):
        x, y = getattr(batch, m), getattr(half, m)
        for b in range(60):
            assert torch.equal(x[b], y[b]) == bool(not missing[b, j] or left[b, j]), (m, b)
    everything = NoiseInjector(NoiseConfig(zero_fill_share=1.0), seed=3).apply(batch, epoch=1, train=True)
    assert torch.equal(everything.mask, batch.mask) and torch.equal(everything.l, batch.l)
    evaluation = NoiseInjector(NoiseConfig(zero_fill_share=1.0), seed=3).apply(batch, epoch=1, train=False)
    assert torch.all(evaluation.mask == 1.0)


def test_per_batch_t_is_shared_and_per_sample_t_is_not() -> None:
    items = [{"id": f"z{i}", "lens": {"a": 4, "v": 4, "l": 4},
              "a": torch.ones(4, 6), "v": torch.ones(4, 5), "l": torch.ones(4, 7)} for i in range(8)]
    batch = collate(items, [[1, 0, 1]] * 8)
    sched = DiffusionSchedule.create("scaled_linear", 0.01, 0.5, 100)
    signal = sched.signal(torch.arange(100))
    for per_sample in (False, True):
        out = NoiseInjector(NoiseConfig(type="impulse", impulse_freq=0.0, per_sample_t=per_sample),
                            seed=11).apply(batch, epoch=0, train=True)
        # impulse with freq 0 leaves sqrt(abar_t) * 1: read t back from the value
        vals = out.v[:, 0, 0]
        assert torch.all(out.v == vals[:, None, None])
        ts = [int(torch.argmin((signal - v).abs())) for v in vals.tolist()]
        assert (len(set(ts)) == 1) == (not per_sample), ts


def test_impulse_hits_thirty_percent_of_entries() -> None:
    items = [{"id": f"z{i}", "lens": {"a": 50, "v": 50, "l": 50}, "a": torch.zeros(50, 6),
              "v": torch.zeros(50, 40), "l": torch.zeros(50, 7)} for i in range(10)]
    batch = collate(items, [[1, 0, 1]] * 10)
    for train in (False, True):
        out = NoiseInjector(NoiseConfig(type="impulse"), seed=1).apply(batch, epoch=0, train=train)
        hit = out.v != 0
        assert float(hit.float().mean()) == pytest.approx(0.3, abs=0.02)
        scales = out.v[hit].abs()
        assert set(torch.sign(out.v[hit]).unique().tolist()) == {-1.0, 1.0}
        if train:  # one t per batch: every spike has the same magnitude sqrt(1 - abar_t)
            assert torch.allclose(scales, scales[0].expand_as(scales))


def test_burst_and_frame_drop_shapes() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.arange(1, 101, dtype=torch.float32)[:, None].repeat(1, 3)
    out = zero_bursts(z, 0.3, 5, g)
    zero = (out == 0).all(1).int().tolist()
    assert sum(zero) == 30 and out.shape == z.shape
    runs, cur = [], 0
    for v in zero + [0]:
        if v:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    assert runs and all(r % 5 == 0 for r in runs)
    assert torch.equal(out[~(out == 0).all(1)], z[~(out == 0).all(1)])
    kept = drop_frames(z[:50], 0.3, g)
    assert kept.shape == (35, 3)
    assert torch.all(torch.diff(kept[:, 0]) > 0)  # an order-preserving subsequence
    assert drop_frames(z[:1], 0.9, g).shape == (1, 3)  # at least one frame survives
    # through the injector: lengths shrink for frame_drop and the lost frames leave zeros at the end
    batch = collate(make_items(6), [[1, 0, 1]] * 6)
    out = NoiseInjector(NoiseConfig(type="frame_drop", drop_rate=0.5)).apply(batch)
    new, old = out.lengths[:, 1], batch.lengths[:, 1]
    assert torch.equal(new, torch.clamp(old - torch.floor(old * 0.5 + 0.5).long(), min=1))
    for b in range(6):
        assert torch.all(out.v[b, int(new[b]):] == 0)


def test_curriculum_levels_and_mixture_unlocking() -> None:
    cfg = NoiseConfig(type="mixture", mixture=["burst", "gaussian", "impulse", "zeros"], curriculum="linear",
                      curriculum_start=0.25, curriculum_epochs=4, level=0.8)
    cur = NoiseCurriculum(cfg)
    assert [cur.level(e) for e in (0, 2, 4, 9)] == pytest.approx([0.2, 0.5, 0.8, 0.8])
    assert cur.level(None) == pytest.approx(0.8)
    assert [cur.kinds(e) for e in (0, 1, 2, 4)] == [["burst"], ["burst", "gaussian"],
                                                    ["burst", "gaussian", "impulse"], cfg.mixture]
    const = NoiseCurriculum(NoiseConfig())
    assert const.level(0) == const.level(50) == 1.0 and const.kinds(0) == ["gaussian"]
    # epoch 0 of a 0.2-start curriculum draws t from the first 20 of 100 steps only
    inj = NoiseInjector(NoiseConfig(type="impulse", impulse_freq=0.0, curriculum="linear", per_sample_t=True))
    items = [{"id": f"z{i}", "lens": {"a": 2, "v": 2, "l": 2}, "a": torch.ones(2, 6), "v": torch.ones(2, 5),
              "l": torch.ones(2, 7)} for i in range(64)]
    out = inj.apply(collate(items, [[1, 0, 1]] * 64), epoch=0, train=True)
    assert float(out.v.min()) >= float(inj.schedule.signal(19)) - 1e-6


# -------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("change, message", [
    ({"type": "pink"}, "unknown noise type 'pink'"),
    ({"level": 1.5}, "noise.level: 1.5 is outside its range"),
    ({"level": -0.1}, "noise.level: -0.1 is outside its range"),
    ({"steps": 0}, "T must be an integer >= 1, got 0"),
    ({"modalities": ["a", "x"]}, "'x' is not a modality"),
    ({"modalities": []}, "at least one modality"),
    ({"type": "mixture", "mixture": ["gaussian", "mixture"]}, "noise.mixture: unknown noise type 'mixture'"),
    ({"schedule": "cosine"}, "unknown beta schedule 'cosine'"),
    ({"beta_start": 0.6}, "noise.beta_start: 0.6 is above noise.beta_end 0.5"),
])
def test_bad_noise_settings_are_rejected(change: dict, message: str) -> None:
    cfg = dataclasses.replace(NoiseConfig(), **change)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        NoiseInjector(cfg)


def test_bad_steps_override_and_missing_modality() -> None:
    with pytest.raises(ConfigError, match="T must be an integer >= 1, got 0"):
        NoiseInjector(NoiseConfig(), steps=0)
    check_noise_config(NoiseConfig(), steps=20)
    with pytest.raises(ConfigError, match="corrupt modality 'v' but feature set X has no 'v' data"):
        check_modalities_present(NoiseConfig(), ["a", "l"], "feature set X")


# ------------------------------------------------------------------------------- mer noise (CLI)

def test_cli_writes_noisy_copy_and_leaves_source_unchanged(tiny_data: Path, tmp_path: Path) -> None:
    before = fingerprint(tiny_data)
    src_files = {p: p.read_bytes() for p in tiny_data.rglob("*") if p.is_file()}
    out = tmp_path / "noisy"
    args = ["noise", "--data", str(tiny_data), "--out", str(out), "--type", "gaussian", "--steps", "40",
            "--conditions", "a,al", "--seed", "3"]
    assert main(args) == 0
    assert fingerprint(tiny_data) == before
    assert {p: p.read_bytes() for p in tiny_data.rglob("*") if p.is_file()} == src_files
    meta = read_metadata(out)
    assert meta["source"]["fingerprint"] == before and meta["fingerprint"] == fingerprint(out) != before
    assert meta["noise"]["settings"]["steps"] == 40 and meta["noise"]["settings"]["seed"] == 3
    assert meta["noise"]["conditions"] == ["a", "al"]
    # conditions a / al: v always corrupted, l only under "a", a never
    table = pd.read_csv(out / "noise_conditions.csv")
    assert set(table["condition"]) == {"a", "al"}
    for cond, mods in table.groupby("condition")["modality"]:
        assert set(mods) == ({"v", "l"} if cond == "a" else {"v"})
    assert (out / "A" / "comparE.h5").read_bytes() == (tiny_data / "A" / "comparE.h5").read_bytes()
    assert (out / "target").is_dir() and (out / "manifest.csv").exists()
    # the copy holds exactly the injector's evaluation noise for each (utterance, condition)
    src, noisy = FeatureStore(tiny_data), FeatureStore(out)
    inj = NoiseInjector(NoiseConfig(), steps=40, seed=3)
    for row in table[table["modality"] == "v"].head(5).itertuples():
        i = src.index[row.id]
        n = int(src.true_lengths["v"][i])
        c = inj.corrupt_one(torch.from_numpy(src.seq("v", i).copy()), n, row.id, row.condition, "v")
        assert torch.equal(torch.from_numpy(noisy.seq("v", noisy.index[row.id]).copy()), c.seq)
        assert c.t == row.t
    # an existing output is refused; the same seed reproduces the same files
    assert main(args) == 2
    again = tmp_path / "again"
    assert main(args[:4] + [str(again)] + args[5:]) == 0
    assert fingerprint(again) == meta["fingerprint"]


def test_noisy_copy_of_a_through_the_loader(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "noisy_a"
    cfg = NoiseConfig(type="burst", modalities=["a"], drop_rate=0.5, burst_len=2)
    meta = write_noisy_featureset(str(tiny_data), str(out), cfg, seed=1)
    assert meta["noise"]["norm_fold"] == 1
    clean = FoldData(FeatureStore(tiny_data), 1).loader("trn", batch_size=8, conditions=["vl"])
    noisy = FoldData(FeatureStore(out), 1).loader("trn", batch_size=8, conditions=["vl"])
    bc, bn = next(iter(clean)), next(iter(noisy))
    assert torch.equal(bc.v, bn.v) and torch.equal(bc.l, bn.l)
    want = NoiseInjector(cfg, seed=1).apply(bc)
    torch.testing.assert_close(bn.a, want.a, atol=1e-4, rtol=1e-4)
    zero_frames = (bn.a.abs() < 1e-4).all(-1)
    assert zero_frames.any() and not torch.equal(bc.a, bn.a)


def test_cli_errors(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["noise", "--data", str(tiny_data), "--out", str(tmp_path / "x")]
    assert main(base + ["--type", "pink"]) == 2
    assert "unknown noise type 'pink'" in capsys.readouterr().err
    assert main(base + ["--level", "2"]) == 2
    assert "noise.level: 2.0 is outside its range" in capsys.readouterr().err
    assert main(base + ["--steps", "0"]) == 2
    assert "T must be an integer >= 1" in capsys.readouterr().err
    no_v = tmp_path / "no_v"
    shutil.copytree(tiny_data, no_v)
    shutil.rmtree(no_v / "V")
    assert main(["noise", "--data", str(no_v), "--out", str(tmp_path / "y"), "--modalities", "a,v"]) == 2
    assert "corrupt modality 'v'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_h5_copy_has_same_utterances(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "fd"
    write_noisy_featureset(str(tiny_data), str(out), NoiseConfig(type="frame_drop", modalities=["l"]), seed=2)
    with h5py.File(tiny_data / "L" / "bert_large.h5") as s, h5py.File(out / "L" / "bert_large.h5") as d:
        assert sorted(s) == sorted(d)
        shorter = [k for k in s if d[k].shape[0] < s[k].shape[0]]
        assert len(shorter) == len(s)  # every utterance lost frames (rate 0.3 of >= 5 tokens)
    assert json.loads((out / "featureset.json").read_text())["noise"]["settings"]["type"] == "frame_drop"


# ------------------------------------------------------------------------------- the noise-type table


def test_config_cli_and_corruptions_read_the_one_table(capsys: pytest.CaptureFixture[str]) -> None:
    from mer_lib.noise.corruptions import function_of
    from mer_lib.noise.table import NOISE_TABLE, NOISE_TYPES

    field = next(f for f in dataclasses.fields(NoiseConfig) if f.name == "type")
    assert tuple(field.metadata["choices"]) == NOISE_TYPES == tuple(NOISE_TABLE)
    for name, row in NOISE_TABLE.items():
        if row.kind != "mixture":
            assert callable(function_of(name))
    with pytest.raises(SystemExit):
        main(["noise", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in NOISE_TYPES)


def test_a_type_of_unknown_kind_is_refused_not_trained_as_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    from mer_lib.noise import table

    monkeypatch.setitem(table.NOISE_TABLE, "gaussian", table.NoiseType("new_kind", "gaussian_eps", "a new type"))
    batch = collate(make_items(4), [[1, 0, 1]] * 4)
    with pytest.raises(ValueError, match="cannot apply kind 'new_kind'"):
        NoiseInjector(NoiseConfig(modalities=["v"])).apply(batch, epoch=0, train=True)
