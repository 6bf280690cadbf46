"""Training speed-ups (issue 13) are exact: each fast path equals the slow one it replaces.

float64 where rounding would hide a real difference; small dims and one thread throughout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mer_lib.config import load_config
from mer_lib.data.dataset import Batch, FoldData
from mer_lib.data.featureset import FeatureStore, write_modality
from mer_lib.inference.device import cpu_quota
from mer_lib.models.blocks import TextCNN
from mer_lib.models.encoding import EmbeddingCache, prefill_teacher_cache
from mer_lib.models.factory import build_model
from tests.helpers_data import SPEC, make_featureset
from tests.test_models_ifmmin import _one_thread  # noqa: F401 - the autouse one-thread fixture

SMALL = ["data.dim_a=4", "data.dim_v=3", "data.dim_l=5", "model_params.embd_size=8", "model_params.text_kernels=[2,3]",
         "model_params.ae_layers=[12,8,4]", "model_params.cls_layers=[8,8]", "model_params.vae_layers=1",
         "model_params.vae_heads=2", "model_params.vae_ff=8", "model_params.vae_latent=4"]
TEACHER = {"ifmmin": "utt_shared", "mmin": "utt_fusion", "nmer": "nmer_pretrain"}


@pytest.fixture()
def fold(tmp_path: Path) -> FoldData:
    root = tmp_path / "fs"
    make_featureset(root, per_speaker=4)
    return FoldData(FeatureStore(root, SPEC), 1)


def _reference_collate(fd: FoldData, batch: Batch) -> dict[str, torch.Tensor]:
    """The per-utterance loop of the reference collate."""
    st, out = fd.store, {}
    rows = batch.index.numpy()
    for m in "avl":
        lens = st.lengths[m][rows]
        x = np.zeros((len(rows), int(lens.max()), st.spec.dims[m]), dtype=np.float32)
        for b, r in enumerate(rows):
            seq = st.seq(m, int(r))
            if m == "a":
                seq = (seq - fd.mean.astype(np.float32)) * (1.0 / fd.std).astype(np.float32)
            x[b, :len(seq)] = seq
        out[m] = torch.from_numpy(x)
    return out


def test_collate_equals_the_per_utterance_loop(fold: FoldData) -> None:
    for split, conds in (("trn", "random_missing"), ("val", ["a", "vl", "avl"])):
        for batch in fold.loader(split, batch_size=7, conditions=conds, shuffle=True, seed=5):
            ref = _reference_collate(fold, batch)
            for m in "avl":
                assert torch.equal(batch.features()[m], ref[m]), (split, m)  # bit for bit
            assert batch.lengths[:, 0].tolist() == fold.store.lengths["a"][batch.index.numpy()].tolist()


def test_split_max_padding_only_adds_zero_frames(fold: FoldData) -> None:
    plain = next(iter(fold.loader("trn", batch_size=5, conditions="full")))
    padded = next(iter(fold.loader("trn", batch_size=5, conditions="full", pad_to_split_max=True)))
    longest = int(fold.store.lengths["a"][fold.rows["trn"]].max())
    assert padded.a.shape[1] == longest >= plain.a.shape[1]
    assert torch.equal(padded.a[:, :plain.a.shape[1]], plain.a) and padded.a[:, plain.a.shape[1]:].abs().sum() == 0
    assert torch.equal(padded.lengths, plain.lengths)


def test_textcnn_skipping_zero_rows_is_bit_identical() -> None:
    torch.manual_seed(0)
    enc = TextCNN(5, 8, kernel_heights=(2, 3), out_channels=4, dropout=0.0)
    x = torch.randn(6, 7, 5)
    x[:, 4:] = 0  # in-file padding
    x[2] = 0  # a missing modality

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        enc.zero_grad()
        out = enc(x)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        return out.detach().clone(), [p.grad.clone() for p in enc.parameters()]

    fast = run()
    import mer_lib.models.blocks as blocks

    plain = blocks._project_nonzero_rows
    try:  # the plain projection of every row: what the speed-up replaced
        blocks._project_nonzero_rows = lambda rows, weight: rows @ weight.t()
        ref = run()
    finally:
        blocks._project_nonzero_rows = plain
    assert torch.equal(fast[0], ref[0])  # same bits, so training is the reference's to the last bit
    for a, b in zip(fast[1], ref[1], strict=True):
        assert torch.equal(a, b)


def test_embedding_cache_keeps_several_padded_lengths_and_pinned_tables() -> None:
    torch.manual_seed(0)
    enc = torch.nn.LSTM(3, 4, batch_first=True)

    class Enc(torch.nn.Module):
        output_dim = 4

        def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
            return enc(x)[0].max(1).values

    cache, e = EmbeddingCache(), Enc()
    x = torch.randn(2, 9, 3)
    idx = torch.tensor([5, 1])
    lens = torch.tensor([9, 9])
    cache.embed("a", e, x, lens, idx)
    cache.pin()
    for steps in (5, 6, 7, 5):  # three unpinned lengths: the least recent one is dropped, the pinned one kept
        cache.embed("a", e, x[:, :steps], lens, idx)
    assert sorted(cache._tables["a"]) == [5, 7, 9]
    hits = cache.hits
    got = cache.embed("a", e, x, lens, idx)
    assert cache.hits == hits + 2 and torch.allclose(got, e(x))


def _double(batch: Batch) -> Batch:
    batch.a, batch.v, batch.l = batch.a.double(), batch.v.double(), batch.l.double()
    return batch


@pytest.mark.parametrize("name", ["ifmmin", "mmin", "nmer"])
def test_prefilled_teacher_cache_gives_the_reference_targets(fold: FoldData, name: str) -> None:
    no_dropout = ["model_params.cls_dropout=0.0", "model_params.text_dropout=0.0", "model_params.vae_dropout=0.0",
                  "model_params.shared_dropout=0.0", "noise.type=zeros"]
    torch.manual_seed(1)
    teacher = build_model(load_config(TEACHER[name], overrides=SMALL + no_dropout)).double()
    models = {}
    for key, extra in (("fast", []), ("slow", ["model_params.teacher_cache=false", "model_params.fast_missing=false"])):
        torch.manual_seed(2)
        models[key] = build_model(load_config(name, overrides=SMALL + no_dropout + extra)).double()
        models[key].attach_teacher(teacher)
    models["slow"].load_state_dict(models["fast"].state_dict())
    seen = prefill_teacher_cache(models["fast"], map(_double, fold.loader("trn", batch_size=8, conditions="full",
                                                                          pad_to_split_max=True)))
    assert seen == len(fold.rows["trn"])
    assert prefill_teacher_cache(models["slow"], []) == 0  # nothing to fill without a cache
    loader = fold.loader("trn", batch_size=6, conditions="random_missing", shuffle=True, seed=3)
    hits = models["fast"].cache.hits
    for batch in map(_double, loader):
        steps = {}
        for key, model in models.items():
            model.train()
            torch.manual_seed(4)
            steps[key] = model.training_step(batch, 0)
        assert steps["fast"].terms == pytest.approx(steps["slow"].terms, rel=1e-9, abs=1e-12)
        assert torch.allclose(steps["fast"].logits, steps["slow"].logits, rtol=1e-9, atol=1e-12)
    assert models["fast"].cache.hits > hits  # served from the prefilled tables


def test_bf16_precision_trains_and_is_recorded(tiny_data: Path, tmp_path: Path) -> None:
    from mer_lib.training.api import train

    train("utt_fusion", str(tiny_data), str(tmp_path / "run"), [1], overrides=[
        "train.niter=1", "train.niter_decay=0", "train.batch_size=32", "train.precision=bf16",
        "train.threads=1", "train.tensorboard=false"], progress=False)
    metrics = json.loads((tmp_path / "run" / "fold_1" / "test_metrics.json").read_text())
    assert 0.0 <= metrics["average"]["ua"] <= 1.0
    assert "precision: bf16" in (tmp_path / "run" / "fold_1" / "config.yaml").read_text()


def test_default_threads_follow_the_cpu_quota() -> None:
    assert 1 <= cpu_quota() <= len(os.sched_getaffinity(0))


def test_resume_state_is_written_every_checkpoint_every_epochs(tiny_data: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mer_lib.inference import checkpoint as ckpt_io
    from mer_lib.training.api import train

    saved: list[tuple[str, int | None]] = []
    real_save = ckpt_io.save

    def spy(obj: dict, path: str | Path) -> None:
        saved.append((Path(path).name, obj.get("epoch")))
        real_save(obj, path)

    monkeypatch.setattr(ckpt_io, "save", spy)
    train("utt_fusion", str(tiny_data), str(tmp_path / "run"), [1], overrides=[
        "train.niter=3", "train.niter_decay=0", "train.batch_size=32", "train.checkpoint_every=2",
        "train.threads=1", "train.tensorboard=false"], progress=False)
    assert [e for name, e in saved if name == "last.pt"] == [1, 2]  # after epoch 2 and after the last (0-based)


@pytest.mark.parametrize("name", ["ifmmin", "mmin", "nmer"])
def test_stage2_steps_run_under_bf16_autocast(fold: FoldData, name: str) -> None:
    torch.manual_seed(1)
    teacher = build_model(load_config(TEACHER[name], overrides=SMALL))
    model = build_model(load_config(name, overrides=SMALL))
    model.attach_teacher(teacher)
    prefill_teacher_cache(model, fold.loader("trn", batch_size=8, conditions="full", pad_to_split_max=True))
    model.train()
    for batch in fold.loader("trn", batch_size=8, conditions="random_missing", shuffle=True, seed=1):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            step = model.training_step(batch, 0)
        step.loss.backward()
        assert torch.isfinite(step.loss)


def test_device_gather_equals_the_cpu_copy(fold: FoldData) -> None:
    # the CUDA path (gather from the resident store, each replicated utterance built once), run on CPU
    loader = fold.loader("val", batch_size=11, conditions=["a", "vl", "avl"])
    rows = np.array([3, 3, 3, 0, 0, 0, 7, 7, 7, 1, 1])
    for m in "avl":
        steps = int(fold.store.lengths[m][rows].max()) + 2
        assert torch.equal(loader._pad_device(m, rows, steps), loader._pad_cpu(m, rows, steps)), m
        assert torch.equal(loader._pad_device(m, rows[::3], steps), loader._pad_cpu(m, rows[::3], steps)), m


# ------------------------------------------------------------------ a store without the in-file padding

def _pad_with_signed_zeros(root: Path) -> None:
    """Rewrite V so that one utterance is all zeros and another has -0.0 in its padding (bits, not values)."""
    import h5py

    path = SPEC.path(root, "v")
    with h5py.File(path, "r") as f:
        items = {uid: f[uid][()] for uid in sorted(f.keys())}
    ids = list(items)
    items[ids[0]][:] = 0.0
    items[ids[1]][-1, 1] = -0.0
    items[ids[2]][-2:] = -0.0
    path.unlink()
    write_modality(root, SPEC, "v", items.items())


def _same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.dtype == y.dtype and x.shape == y.shape and torch.equal(x.view(torch.int32), y.view(torch.int32))


def _assert_same_batch(x: Batch, y: Batch, where: str) -> None:
    for m in "avl":
        assert _same_bits(x.features()[m], y.features()[m]), (where, m)
    for name in ("mask", "lengths", "label", "index"):
        assert torch.equal(getattr(x, name), getattr(y, name)), (where, name)
    assert x.ids == y.ids, where


def test_store_without_padding_gives_the_same_batches_bit_for_bit(tmp_path: Path) -> None:
    root = tmp_path / "fs"
    make_featureset(root, per_speaker=4)
    _pad_with_signed_zeros(root)
    padded = FoldData(FeatureStore(root, SPEC), 1)
    store = FeatureStore(root, SPEC, keep_padding=False)
    trimmed = FoldData(store, 1)
    full = padded.store
    assert store.nbytes() < full.nbytes() and store.data["a"].shape == full.data["a"].shape  # A keeps every row
    for m in "avl":
        assert np.array_equal(store.lengths[m], full.lengths[m]) and np.array_equal(store.true_lengths[m],
                                                                                       full.true_lengths[m])
        for i in range(len(store)):
            held, whole = store.seq(m, i), full.seq(m, i)
            assert held.view(np.uint32).tobytes() == whole[:len(held)].view(np.uint32).tobytes()
            assert not whole[len(held):].view(np.uint32).any()  # only +0.0 rows are left out
    assert len(store.seq("v", 0)) == 0 and store.true_lengths["v"][0] == 1  # an all-zero V holds no row
    assert len(store.seq("v", 2)) == len(full.seq("v", 2))  # trailing -0.0 rows are held
    plans = [("trn", {"conditions": "random_missing", "shuffle": True, "seed": 3}, (0, 1)),
             ("trn", {"conditions": "full", "pad_to_split_max": True}, (0,)),
             ("val", {"conditions": ["a", "v", "vl", "avl"]}, (0,)),
             ("tst", {"conditions": "full"}, (0,))]
    for split, kw, epochs in plans:
        for epoch in epochs:
            want, got = padded.loader(split, batch_size=7, **kw), trimmed.loader(split, batch_size=7, **kw)
            want.set_epoch(epoch)
            got.set_epoch(epoch)
            pairs = list(zip(want, got, strict=True))
            assert pairs
            for x, y in pairs:
                _assert_same_batch(x, y, f"{split} {kw} epoch {epoch}")
    # the CUDA path (gather from the resident store), run on CPU
    want, got = padded.loader("val", batch_size=9, conditions=["a", "vl"]), trimmed.loader("val", batch_size=9,
                                                                                           conditions=["a", "vl"])
    rows = np.array([0, 0, 1, 1, 2, 2, 5, 9])
    for m in "avl":
        steps = int(full.lengths[m][rows].max()) + 1
        assert _same_bits(got._pad_device(m, rows, steps), want._pad_cpu(m, rows, steps)), m


def test_training_reads_a_store_without_padding_and_predicts_the_same(tiny_data: Path, tmp_path: Path) -> None:
    from mer_lib.data.featureset import FeatureSet
    from mer_lib.training.api import train
    from mer_lib.training.engine import DataContext

    fs = FeatureSet.open(tiny_data)
    assert not fs.store().keep_padding  # what training and evaluation load
    overrides = ["train.niter=1", "train.niter_decay=0", "train.batch_size=32", "train.threads=1",
                 "train.tensorboard=false"]
    for model, teacher in (("utt_shared", None), ("ifmmin", "utt_shared")):  # ifmmin: the prefilled teacher cache
        for keep in (True, False):
            ctx = DataContext(store=fs.store(keep_padding=keep), label_names=fs.label_names,
                              fingerprint=fs.fingerprint(), root=str(tiny_data))
            train(model, str(tiny_data), str(tmp_path / f"{model}_{keep}"), [1], overrides=overrides,
                  progress=False, data_context=ctx, teacher=str(tmp_path / f"{teacher}_{keep}") if teacher else None)
        csv = [(tmp_path / f"{model}_{keep}" / "fold_1" / "predictions_tst.csv").read_bytes() for keep in (True, False)]
        assert csv[0] == csv[1], model
