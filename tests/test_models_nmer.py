"""NMER: parameter counts, batch independence, teacher handling, losses, training and a one-epoch run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from mer_lib.config import ConfigError, load_config
from mer_lib.data.dataset import Batch
from mer_lib.models.blocks import count_parameters
from mer_lib.models.factory import build_model
from mer_lib.models.nmer import NMER, NMERPretrain
from mer_lib.models.vae import kl_divergence

# small dims so the tests are fast; the VAE shape follows embd_size (3 * 16 = 48 specific + 48 condition)
SMALL = ["data.dim_a=6", "data.dim_v=5", "data.dim_l=7", "model_params.embd_size=16"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared, loaded machine extra threads only wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_cfg(model: str, *extra: str):  # ExperimentConfig
    return load_config(model, overrides=[*SMALL, *extra])


def make_batch(n: int = 6, seed: int = 0, masks: list[list[float]] | None = None, t: int = 6) -> Batch:
    """A hand-made batch: every sample has the same padded length ``t`` (lengths = t)."""
    g = torch.Generator().manual_seed(seed)
    masks = masks or [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]] * (n // 6 + 1)
    return Batch(a=torch.randn(n, t, 6, generator=g), v=torch.rand(n, t, 5, generator=g),
                 l=torch.randn(n, t, 7, generator=g), mask=torch.tensor(masks[:n], dtype=torch.float32),
                 lengths=torch.full((n, 3), t), label=torch.arange(n) % 4, index=torch.arange(n),
                 ids=[f"u{seed}_{i}" for i in range(n)])


def take(batch: Batch, rows: list[int]) -> Batch:
    idx = torch.tensor(rows)
    return Batch(batch.a[idx], batch.v[idx], batch.l[idx], batch.mask[idx], batch.lengths[idx], batch.label[idx],
                 batch.index[idx], [batch.ids[i] for i in rows])


def stage2(*extra: str) -> NMER:
    teacher = build_model(small_cfg("nmer_pretrain"))
    model = build_model(small_cfg("nmer", *extra))
    model.attach_teacher(teacher)
    return model


def test_parameter_count_of_faithful_stage2_matches_spec() -> None:
    model = build_model(load_config("nmer"))
    counts = {k: count_parameters(v) for k, v in model.subnets().items()}
    assert counts == {"A_inv": 133_120, "L_inv": 1_622_528, "V_inv": 241_664, "A_spec": 133_120,
                      "L_spec": 1_622_528, "V_spec": 241_664, "Inv": 33_024, "VAE": 13_020_160, "C": 66_820}
    vae = model.netVAE
    assert count_parameters(vae.encoder) == 12_814_720
    assert count_parameters(vae.fc_mu) + count_parameters(vae.fc_logvar) == 98_432
    assert count_parameters(vae.decoder) == 107_008
    total = model.trainable_parameters()
    assert total == 17_114_628
    unused_fc_out = 448 * 384 + 384  # defined but never called in the published ConditionVAE
    assert total + unused_fc_out == 17_287_044 and round((total + unused_fc_out) / 1e6, 1) == 17.3
    stage1 = build_model(load_config("nmer_pretrain"))
    assert stage1.trainable_parameters() == 2 * 1_997_312 + 33_024 + 115_460


def test_recipes_follow_the_reference_scripts() -> None:
    s1, s2 = load_config("nmer_pretrain"), load_config("nmer")
    assert (s1.train.batch_size, s1.train.niter, s1.train.beta1, s1.train.grad_clip, s1.model_params.cls_dropout) \
        == (64, 10, 0.9, 0.5, 0.2)
    assert (s2.train.batch_size, s2.train.niter + s2.train.niter_decay, s2.train.beta1, s2.train.grad_clip) \
        == (128, 80, 0.5, 1.0)
    mp = s2.model_params
    assert (mp.cls_dropout, mp.cls_bn, mp.invariant_weight, mp.vae_attention, mp.kl_reduction) \
        == (0.1, True, 1.0, "per_sample", "mean")
    assert (s2.noise.type, s2.noise.steps, s2.noise.beta_end, s2.noise.schedule) == ("gaussian", 100, 0.5,
                                                                                      "scaled_linear")
    published = load_config("nmer", Path(__file__).parents[1] / "mer_lib/configs/nmer_published.yaml")
    assert published.model_params.vae_attention == "cross_batch" and published.model_params.kl_reduction == "sum"
    assert published.model_params.eval_sample_z and published.noise.fresh_eval_noise
    assert published.train.select_on == "test_leak"


@pytest.mark.parametrize("attention, independent", [("per_sample", True), ("cross_batch", False)])
def test_prediction_of_one_sample_and_the_rest_of_its_batch(attention: str, independent: bool) -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg("nmer", f"model_params.vae_attention={attention}")).eval()
    batch = make_batch(6)
    other = make_batch(6, seed=1)
    mixed = take(batch, [0])
    mixed = Batch(*(torch.cat([getattr(mixed, f), getattr(take(other, [1, 2, 3]), f)])
                    for f in ("a", "v", "l", "mask", "lengths", "label", "index")), mixed.ids + other.ids[1:4])
    with torch.no_grad():
        full = model.predict_logits(batch)
        alone = model.predict_logits(take(batch, [0]))
        beside_others = model.predict_logits(mixed)
    assert torch.allclose(full[0], alone[0], atol=1e-5) == independent
    assert torch.allclose(full[0], beside_others[0], atol=1e-5) == independent


def test_teacher_is_frozen_in_eval_mode_and_initialises_the_student() -> None:
    teacher = build_model(small_cfg("nmer_pretrain"))
    student = build_model(small_cfg("nmer"))
    student.attach_teacher(teacher)
    for name in ("netA_inv", "netL_spec", "netV_spec"):
        for k, v in getattr(student, name).state_dict().items():
            assert torch.equal(v, getattr(teacher, name).state_dict()[k])
    for k, v in student.netInv.state_dict().items():
        assert torch.equal(v, teacher.netShared.state_dict()[k])
    student.train()
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    assert not any(p is q for p in student.parameters() for q in teacher.parameters())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    step = student.training_step(make_batch(), epoch=0)
    step.loss.backward()
    opt.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="needs a nmer_pretrain teacher"):
        build_model(small_cfg("nmer")).attach_teacher(build_model(small_cfg("utt_shared")))
    with pytest.raises(RuntimeError, match="has no teacher"):
        build_model(small_cfg("nmer")).training_step(make_batch(), epoch=0)


def test_loss_terms_are_finite_and_add_up() -> None:
    torch.manual_seed(0)
    model = stage2("model_params.invariant_weight=3.0", "model_params.kl_weight=0.5", "model_params.mse_weight=2.0")
    step = model.training_step(make_batch(12), epoch=0)
    assert set(step.terms) == {"ce", "mse_inv", "mse_rec", "kl"}
    assert all(torch.isfinite(torch.tensor(v)) for v in step.terms.values())
    t = step.terms
    assert float(step.loss.detach()) == pytest.approx(t["ce"] + 3.0 * t["mse_inv"] + 2.0 * t["mse_rec"] + 0.5 * t["kl"],
                                             rel=1e-5)
    assert step.logits.shape == (12, 4)


def test_kl_reductions() -> None:
    mu, logvar = torch.ones(4, 64), torch.zeros(4, 64)
    assert float(kl_divergence(mu, logvar, "mean")) == pytest.approx(32.0)  # 0.5 * 64 per sample
    assert float(kl_divergence(mu, logvar, "sum")) == pytest.approx(128.0)
    assert float(kl_divergence(torch.zeros(3, 8), torch.zeros(3, 8))) == 0.0
    lv = torch.full((2, 5), 0.7)
    want = -0.5 * (1 + 0.7 - torch.exp(torch.tensor(0.7))) * 5
    assert float(kl_divergence(torch.zeros(2, 5), lv)) == pytest.approx(float(want), rel=1e-6)


def test_training_sees_noise_where_evaluation_sees_zeros() -> None:
    model = stage2().eval()  # eval: no dropout, so only the inputs differ
    batch = make_batch(6)
    changed = Batch(batch.a.clone(), batch.v + 1.0, batch.l.clone(), batch.mask, batch.lengths, batch.label,
                    batch.index, batch.ids)  # v is missing in samples 0, 2, 4
    outs = []
    for b in (batch, changed):
        torch.manual_seed(0)
        outs.append(model.training_step(b, epoch=0).logits.detach())
    missing_v = batch.mask[:, 1] == 0
    assert not torch.allclose(outs[0][missing_v], outs[1][missing_v])
    with torch.no_grad():
        assert torch.allclose(model.predict_logits(batch)[missing_v], model.predict_logits(changed)[missing_v])
    # z = mu at evaluation (deterministic) unless eval_sample_z
    with torch.no_grad():
        assert torch.equal(model.predict_logits(batch), model.predict_logits(batch))
        sampled = stage2("model_params.eval_sample_z=true").eval()
        assert not torch.equal(sampled.predict_logits(batch), sampled.predict_logits(batch))


def test_training_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = stage2("model_params.teacher_cache=false")
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = make_batch(12)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        step = model.training_step(batch, epoch=0)
        step.loss.backward()
        opt.step()
        losses.append(float(step.loss.detach()))
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


def test_stage1_any_batch_size_and_no_diffusion_branch() -> None:
    model = build_model(small_cfg("nmer_pretrain"))
    assert isinstance(model, NMERPretrain) and model.train_conditions == "full" and not model.needs_teacher
    for n in (2, 7, 64):
        full = make_batch(n, masks=[[1, 1, 1]] * n)
        step = model.training_step(full, epoch=0)
        assert step.logits.shape == (n, 4) and set(step.terms) == {"ce", "cmd"}
        assert torch.isfinite(step.loss)
    with pytest.raises(ConfigError, match="needs the `diffusers` package"):
        build_model(small_cfg("nmer_pretrain", "model_params.diffusion_regulariser=true"))
    with pytest.raises(ConfigError, match="availability_mask is not supported by nmer"):
        build_model(small_cfg("nmer", "model_params.availability_mask=true"))
    assert NMER.teacher_models == ("nmer_pretrain",)
    assert stage2().train_conditions == "random_missing"  # published: the six missing conditions only
    assert stage2("model_params.stage2_train_full=true").train_conditions == "random_missing_or_full"


def test_one_epoch_two_stage_nmer_run(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mer_lib.cli import main

    fast = [x for o in ("train.batch_size=32", "train.eval_batch_size=256", "train.tensorboard=false",
                        "train.threads=1", "model_params.embd_size=16")
            for x in ("--set", o)]
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert main(["train", "--model", "nmer_pretrain", "--data", str(tiny_data), "--fold", "1", "--out", str(s1),
                 "--epochs", "1", "--no-progress", *fast]) == 0
    assert main(["train", "--model", "nmer", "--data", str(tiny_data), "--fold", "1", "--out", str(s2),
                 "--teacher", str(s1), "--epochs", "1", "--no-progress", *fast]) == 0
    metrics = json.loads((s2 / "fold_1" / "test_metrics.json").read_text())
    assert metrics["model"] == "nmer" and 0.0 <= metrics["average"]["ua"] <= 1.0
    assert {"a", "v", "l", "av", "al", "vl", "avl"} <= set(metrics)
    # the improved recipe by name, on the same teacher
    s3 = tmp_path / "s3"
    assert main(["train", "--model", "nmer", "--recipe", "improved", "--data", str(tiny_data), "--fold", "1",
                 "--out", str(s3), "--teacher", str(s1), "--epochs", "1", "--no-progress", *fast]) == 0
    run = json.loads((s3 / "run.json").read_text())
    assert run["recipe"] == "improved"
    saved = (s3 / "fold_1" / "config.yaml").read_text()
    assert "nmer_classifier_input: residual" in saved and "cls_bn: false" in saved
    assert main(["train", "--model", "nmer_pretrain", "--recipe", "improved", "--data", str(tiny_data),
                 "--out", str(tmp_path / "s4")]) == 2
    assert "model 'nmer_pretrain' has no 'improved' recipe" in capsys.readouterr().err


@pytest.mark.parametrize("output, low, high", [("sigmoid", 0.0, 1.0), ("tanh", -1.0, 1.0), ("linear", None, None)])
def test_decoder_output_ranges(output: str, low: float | None, high: float | None) -> None:
    torch.manual_seed(0)
    model = stage2(f"model_params.vae_decoder_output={output}").eval()
    with torch.no_grad():
        # large inputs push a bounded decoder against its range; a linear one goes past it
        x_rec = model.netVAE(torch.randn(32, 48) * 50, torch.randn(32, 48) * 50)[0]
    if low is None:
        assert x_rec.min() < -1.0 or x_rec.max() > 1.0
    else:
        assert low <= float(x_rec.min()) and float(x_rec.max()) <= high
    assert count_parameters(model.netVAE.decoder) == count_parameters(stage2().netVAE.decoder)
    with pytest.raises(ConfigError, match="vae_decoder_output"):
        small_cfg("nmer", "model_params.vae_decoder_output=relu")


def test_vae_init_reference_or_pytorch() -> None:
    torch.manual_seed(0)
    ref = build_model(load_config("nmer"))
    torch.manual_seed(0)
    own = build_model(load_config("nmer", overrides=["model_params.vae_init=pytorch"]))
    kaiming = (2 / 768) ** 0.5  # kaiming_normal_(fan_in) std of Linear(768, 64)
    assert float(ref.netVAE.fc_mu.weight.detach().std()) == pytest.approx(kaiming, rel=0.05)
    assert float(own.netVAE.fc_mu.weight.detach().std()) == pytest.approx((1 / (3 * 768)) ** 0.5, rel=0.05)  # PyTorch's
    ffn = ref.netVAE.encoder.layers[0].linear1
    assert float(ffn.weight.detach().std()) == pytest.approx(kaiming, rel=0.05)
    assert float(ffn.bias.detach().abs().max()) == 0.0
    assert float(own.netVAE.encoder.layers[0].linear1.bias.detach().abs().max()) > 0
    # every other sub-network keeps the reference init in both modes (the encoders come first: same draws)
    assert float(own.netC.fc_out.bias.detach().abs().max()) == 0.0
    assert all(torch.equal(a, b) for a, b in zip(ref.netA_spec.parameters(), own.netA_spec.parameters(), strict=True))


@pytest.mark.parametrize("mode, width", [("reconstruction", 48), ("residual", 48), ("concat", 96)])
def test_classifier_input(mode: str, width: int) -> None:
    torch.manual_seed(0)
    model = stage2(f"model_params.nmer_classifier_input={mode}", "model_params.cls_bn=false").eval()
    seen: list[torch.Tensor] = []
    model.netC.register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    batch = make_batch(6)
    with torch.no_grad():
        logits, x_rec, cond, _, _ = model(batch)
        from mer_lib.models.encoding import encode_fused, fuse

        feats = batch.features()
        fused = fuse(encode_fused(model.encoders("spec"), feats, batch.mask, batch.lengths, fast=model.fast))
    want = {"reconstruction": x_rec, "residual": x_rec + fused, "concat": torch.cat([x_rec, cond], -1)}[mode]
    assert seen[0].shape == (6, width) and torch.allclose(seen[0], want)
    assert logits.shape == (6, 4)


def test_kl_warmup_ramps_the_weight() -> None:
    model = stage2("model_params.kl_weight=0.5", "model_params.kl_warmup_epochs=4")
    assert [model.kl_weight(e) for e in range(6)] == [0.0, 0.125, 0.25, 0.375, 0.5, 0.5]
    assert stage2("model_params.kl_weight=0.5").kl_weight(0) == 0.5
    torch.manual_seed(0)
    step = model.training_step(make_batch(12), epoch=0)
    t = step.terms
    assert float(step.loss.detach()) == pytest.approx(t["ce"] + t["mse_inv"] + t["mse_rec"], rel=1e-5)


def test_improved_recipe_only_changes_named_fields() -> None:
    faithful = load_config("nmer")
    improved = load_config("nmer", Path(__file__).parents[1] / "mer_lib/configs/nmer_improved.yaml")
    diff = {k for k, v in improved.model_params.__dict__.items() if getattr(faithful.model_params, k) != v}
    assert diff == {"nmer_classifier_input", "cls_bn"}
    assert improved.recipe == "improved" and improved.train == faithful.train
    assert improved.noise == dataclasses.replace(faithful.noise, zero_fill_share=0.5)
    assert faithful.noise.zero_fill_share == 0
    assert faithful.model_params.nmer_classifier_input == "reconstruction" and faithful.model_params.cls_bn


def test_evaluation_shares_encodings_across_conditions_exactly() -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg("nmer")).eval()
    base = make_batch(2, masks=[[1, 1, 1]] * 2)
    conds = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]]
    pick = torch.arange(2).repeat_interleave(7)
    batch = Batch(base.a[pick], base.v[pick], base.l[pick], torch.tensor(conds * 2, dtype=torch.float32),
                  base.lengths[pick], base.label[pick], pick, [base.ids[i] for i in pick.tolist()])
    unique = Batch(batch.a, batch.v, batch.l, batch.mask, batch.lengths, batch.label, torch.arange(14), batch.ids)
    with torch.no_grad():
        assert torch.allclose(model.predict_logits(batch), model.predict_logits(unique), atol=1e-6)
