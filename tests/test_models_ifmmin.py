"""Faithfulness of the MMIN / IF-MMIN / utterance-fusion networks and losses (spec models.md 2-4, 6, 11)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mer_lib.config import load_config, recipe_path
from mer_lib.data.dataset import Batch
from mer_lib.models.blocks import (
    FcClassifier,
    LSTMEncoder,
    ResidualAE,
    SharedEncoder,
    TextCNN,
    count_parameters,
    init_reference,
)
from mer_lib.models.cmd import cmd, mean_pairwise_cmd
from mer_lib.models.factory import build_model

# Small inputs and widths: the math under test does not depend on the sizes.
EMB = 16
SMALL = ["data.dim_a=6", "data.dim_v=5", "data.dim_l=7", f"model_params.embd_size={EMB}",
         "model_params.ae_layers=[24,12,8]", "model_params.cls_layers=[16,16]"]
# Every condition once plus two repeats: rows 0..5 = a, v, l, av, al, vl.
MASKS = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 1, 1]]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is fastest, and on a shared 2-core box far faster than several."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_batch(dims: tuple[int, int, int] = (6, 5, 7), steps: tuple[int, int, int] = (9, 6, 7), seed: int = 0,
               masks: list[list[int]] | None = None, index: list[int] | None = None) -> Batch:
    """A hand-built padded batch: A has ragged true lengths (zero tails), V and L fixed lengths."""
    g = torch.Generator().manual_seed(seed)
    masks = masks if masks is not None else MASKS
    n = len(masks)
    a = torch.randn(n, steps[0], dims[0], generator=g)
    lens_a = torch.tensor([steps[0] - (i % 4) for i in range(n)])
    for i, length in enumerate(lens_a.tolist()):
        a[i, length:] = 0
    lengths = torch.stack([lens_a, torch.full((n,), steps[1]), torch.full((n,), steps[2])], dim=1)
    v = torch.randn(n, steps[1], dims[1], generator=g)
    lex = torch.randn(n, steps[2], dims[2], generator=g)
    return Batch(a=a, v=v, l=lex,
                 mask=torch.tensor(masks, dtype=torch.float32), lengths=lengths,
                 label=torch.arange(n) % 4, index=torch.tensor(index if index is not None else list(range(n))),
                 ids=[f"u{i}" for i in range(n)])


def small_model(name: str, *extra: str, seed: int = 0, config_file: str | None = None):
    torch.manual_seed(seed)
    return build_model(load_config(name, config_file, SMALL + list(extra)))


def student_with_teacher(name: str, teacher: str, *extra: str):
    t = small_model(teacher, *[e for e in extra if not e.startswith("model_params.ifim")], seed=1)
    s = small_model(name, *extra, seed=2)
    s.attach_teacher(t)
    return s, t


# --------------------------------------------------------------------------- parameter counts


def test_block_parameter_counts_match_the_reference():
    assert count_parameters(LSTMEncoder(130, 128)) == 133_120
    assert count_parameters(LSTMEncoder(342, 128)) == 241_664
    assert count_parameters(TextCNN(1024, 128)) == 1_622_528
    assert count_parameters(FcClassifier(768, [128, 128], 4)) == 115_460
    assert count_parameters(FcClassifier(384, [128, 128], 4)) == 66_308
    assert count_parameters(FcClassifier(320, [128, 128], 4)) == 58_116
    assert count_parameters(SharedEncoder(128)) == 33_024
    assert count_parameters(SharedEncoder(128, variant="v0200")) == 66_048
    assert count_parameters(ResidualAE(384, [256, 128, 64], 5)) == 1_694_400


@pytest.mark.parametrize("name, expected", [("utt_shared", 2_145_796), ("ifmmin", 3_782_852),
                                            ("utt_fusion", 133_120 + 241_664 + 1_622_528 + 66_308),
                                            ("mmin", 133_120 + 241_664 + 1_622_528 + 2 * 1_694_400 + 58_116)])
def test_model_parameter_counts_match_the_reference(name, expected):
    model = build_model(load_config(name))
    assert model.trainable_parameters() == expected
    assert set(model.subnets()) >= {"A", "L", "V", "C"}


# --------------------------------------------------------------------------- blocks


def test_textcnn_equals_reference_conv2d_and_masked_pool_equals_truncation():
    torch.manual_seed(0)
    enc = init_reference(TextCNN(16, 8, out_channels=4, dropout=0.0)).eval()
    x = torch.randn(3, 9, 16)
    ref = torch.cat([torch.relu(conv(x.unsqueeze(1)).squeeze(3)).max(dim=2).values for conv in enc.convs], dim=1)
    assert torch.allclose(enc.features(x), ref, atol=1e-5)
    masked = TextCNN(16, 8, out_channels=4, dropout=0.0, pool="masked_maxpool").eval()
    masked.load_state_dict(enc.state_dict())
    lengths = torch.tensor([9, 6, 5])
    got = masked(x, lengths)
    for i, length in enumerate(lengths.tolist()):
        assert torch.allclose(got[i], enc(x[i:i + 1, :length])[0], atol=1e-5)
    with pytest.raises(ValueError, match="at least 5 tokens"):
        enc(torch.zeros(1, 4, 16))


def test_lstm_maxpool_covers_pads_and_masked_pool_matches_unpadded():
    torch.manual_seed(0)
    enc = LSTMEncoder(4, 8)
    masked = LSTMEncoder(4, 8, pool="masked_maxpool")
    masked.load_state_dict(enc.state_dict())
    x = torch.randn(1, 5, 4)
    padded = torch.cat([x, torch.zeros(1, 7, 4)], dim=1)
    # Faithful: the pads change the embedding; masked: they do not.
    assert not torch.allclose(enc(padded), enc(x))
    assert torch.allclose(masked(padded, torch.tensor([5])), enc(x), atol=1e-6)


def test_reference_init_is_kaiming_fan_in_with_zero_bias():
    torch.manual_seed(0)
    net = init_reference(TextCNN(64, 128))
    conv = net.convs[0].weight  # [128, 1, 3, 64]: fan_in = 3 * 64
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (3 * 64)), rel=0.05)
    assert torch.count_nonzero(net.convs[0].bias) == 0
    lin = init_reference(FcClassifier(384, [256], 4)).module[0]
    assert lin.weight.std().item() == pytest.approx(math.sqrt(2 / 384), rel=0.05)
    assert torch.count_nonzero(lin.bias) == 0
    lstm = init_reference(LSTMEncoder(4, 16)).rnn
    assert lstm.weight_ih_l0.abs().max() <= 1 / math.sqrt(16)  # PyTorch default kept
    assert torch.count_nonzero(lstm.bias_ih_l0) > 0


def test_residual_ae_variants_follow_their_recurrences():
    torch.manual_seed(0)
    x, s = torch.randn(4, 12), torch.randn(4, 12)

    def blocks(ae):
        return [getattr(ae, f"encoder_{i}") for i in range(3)], [getattr(ae, f"decoder_{i}") for i in range(3)]

    mmin = ResidualAE(12, [8, 4], 3, mode="mmin")
    enc, dec = blocks(mmin)
    u, h, zs = x, torch.zeros_like(x), []
    for e, d in zip(enc, dec, strict=True):
        u = u + h
        zs.append(e(u))
        h = d(zs[-1])
    recon, lat = mmin(x)
    assert torch.allclose(recon, mmin.transition(u + h)) and torch.allclose(lat, torch.cat(zs, 1))

    head = ResidualAE(12, [8, 4], 3, mode="head")
    enc, dec = blocks(head)
    h, zs = x, []
    for e, d in zip(enc, dec, strict=True):
        zs.append(e(h + s))
        h = d(zs[-1])
    recon, lat = head(x, s)
    assert torch.allclose(recon, head.transition(h)) and torch.allclose(lat, torch.cat(zs, 1))

    paper = ResidualAE(12, [8, 4], 3, mode="paper")
    enc, dec = blocks(paper)
    zs = [e(x + (i + 1) * s) for i, e in enumerate(enc)]
    recon, lat = paper(x, s)
    assert torch.allclose(recon, paper.transition(x + 3 * s + dec[2](zs[2])), atol=1e-6)
    assert torch.allclose(lat, torch.cat(zs, 1), atol=1e-6)
    (recon.sum() + lat.sum()).backward()
    assert all(p.grad is None for d in dec[:2] for p in d.parameters())  # decoders 1..n-1 never trained
    assert all(p.grad is not None for p in dec[2].parameters())
    with pytest.raises(ValueError, match="needs the invariant"):
        paper(x)


# --------------------------------------------------------------------------- CMD


def test_cmd_matches_hand_computed_values():
    x = torch.tensor([[0.0, 0.0], [2.0, 4.0]])
    y = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    # means [1, 2] vs [1, 1] -> 1; centred x = +-[1, 2]: c2 = [1, 4], c4 = [1, 16], odd moments 0; y: all 0.
    expected = 1 + math.sqrt(17) + math.sqrt(257)
    assert cmd(x, y, k=5, eps=0.0).item() == pytest.approx(expected, rel=1e-6)
    assert cmd(y, x, k=5, eps=0.0).item() == pytest.approx(expected, rel=1e-6)
    assert cmd(x, y, k=2, eps=0.0).item() == pytest.approx(1 + math.sqrt(17), rel=1e-6)
    scaled = 1 / 4 + math.sqrt(17) / 16 + math.sqrt(257) / 256  # features in [0, 4]
    assert cmd(x, y, variant="scaled", eps=0.0).item() == pytest.approx(scaled, rel=1e-6)
    assert cmd(x, y, variant="scaled", bounds=[0, 4], eps=0.0).item() == pytest.approx(scaled, rel=1e-6)
    assert mean_pairwise_cmd([x, y, y], eps=0.0).item() == pytest.approx(2 * expected / 3, rel=1e-6)
    with pytest.raises(ValueError, match="variant"):
        cmd(x, y, variant="other")


def test_cmd_eps_keeps_the_gradient_finite_on_identical_moments():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]], requires_grad=True)
    cmd(x, x.detach().clone(), eps=0.0).backward()
    assert torch.isnan(x.grad).any()  # the reference's NaN
    x.grad = None
    cmd(x, x.detach().clone(), eps=1e-12).backward()
    assert torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------- stage 1


def test_utt_shared_loss_is_ce_plus_mean_pairwise_cmd():
    model = small_model("utt_shared")
    model.eval()  # no dropout: the forward is repeatable
    batch = make_batch(masks=[[1, 1, 1]] * 8)
    out = model.training_step(batch, 1)
    logits, shared = model(batch)
    ce = F.cross_entropy(logits, batch.label)
    cmds = [cmd(shared["l"], shared["v"]), cmd(shared["l"], shared["a"]), cmd(shared["a"], shared["v"])]
    assert out.loss.item() == pytest.approx((ce + sum(cmds) / 3).item(), rel=1e-5)
    assert out.terms["cmd"] == pytest.approx((sum(cmds) / 3).item(), rel=1e-5)
    assert logits.shape == (8, 4)


def test_stage1_eval_zero_fills_missing_modalities():
    model = small_model("utt_fusion").eval()
    batch = make_batch()
    zeroed = make_batch()
    for m, col in (("a", 0), ("v", 1), ("l", 2)):
        getattr(zeroed, m).mul_(batch.mask[:, col].view(-1, 1, 1))
    zeroed.mask = torch.ones_like(zeroed.mask)
    assert torch.allclose(model.predict_logits(batch), model.predict_logits(zeroed), atol=1e-5)


# --------------------------------------------------------------------------- teacher


def test_teacher_is_frozen_in_eval_mode_and_initialises_the_student():
    student, teacher = student_with_teacher("ifmmin", "utt_shared")
    student.train()
    assert student.training and student.netC.training
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not any(k.startswith("teacher") for k in student.state_dict())
    assert student.trainable_parameters() == sum(p.numel() for p in student.parameters())
    for mine, theirs in (("netA", "netA"), ("netL", "netL"), ("netV", "netV"), ("netInv", "netShared")):
        for k, v in getattr(student, mine).state_dict().items():
            assert torch.equal(v, getattr(teacher, theirs).state_dict()[k])
    student.double()  # device/dtype moves reach the unregistered teacher
    assert next(teacher.parameters()).dtype == torch.float64


def test_wrong_or_mismatched_teacher_is_a_clear_error():
    student = small_model("ifmmin")
    with pytest.raises(ValueError, match="needs a utt_shared teacher, got 'utt_fusion'"):
        student.attach_teacher(small_model("utt_fusion"))
    with pytest.raises(ValueError, match="needs a utt_fusion teacher"):
        small_model("mmin").attach_teacher(small_model("utt_shared"))
    with pytest.raises(ValueError, match="netInv"):
        student.attach_teacher(small_model("utt_shared", "model_params.shared_encoder=v0200"))
    with pytest.raises(RuntimeError, match="no teacher"):
        student.training_step(make_batch(), 1)


def test_imagination_and_invariant_targets():
    student, teacher = student_with_teacher("ifmmin", "utt_shared")
    batch = make_batch()
    target_img, target_inv = student.targets(batch)
    encs = {"a": teacher.netA, "l": teacher.netL, "v": teacher.netV}
    cols = {"a": 0, "v": 1, "l": 2}
    with torch.no_grad():
        for j, m in enumerate(("a", "l", "v")):
            x = getattr(batch, m)
            keep = batch.mask[:, cols[m]].view(-1, 1, 1)
            comp = encs[m](x * (1 - keep))  # complement input
            zero = encs[m](torch.zeros_like(x[:1]))[0]
            slot = target_img[:, EMB * j:EMB * (j + 1)]
            assert torch.allclose(slot, comp, atol=1e-5)
            for i in range(len(batch)):
                if batch.mask[i, cols[m]]:
                    assert torch.allclose(slot[i], zero, atol=1e-5)  # available -> teacher(0)
                else:
                    assert torch.allclose(slot[i], encs[m](x[i:i + 1])[0], atol=1e-5)  # missing -> real
            inv = teacher.netShared(encs[m](x))  # invariant target: full input
            assert torch.allclose(target_inv[:, EMB * j:EMB * (j + 1)], inv, atol=1e-5)


# --------------------------------------------------------------------------- losses


def test_ifmmin_loss_terms_and_weights():
    student, _ = student_with_teacher("ifmmin", "utt_shared")
    student.eval()
    batch = make_batch()
    out = student.training_step(batch, 1)
    logits, recon, invariant = student(batch)
    target_img, target_inv = student.targets(batch)
    mse_img, mse_inv = F.mse_loss(recon, target_img), F.mse_loss(invariant, target_inv)
    expected = F.cross_entropy(logits, batch.label) + 1.0 * mse_img + 100.0 * mse_inv
    assert student.cfg.model_params.invariant_weight == 100.0
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.terms["mse_img"] == pytest.approx(mse_img.item(), rel=1e-5)
    assert out.terms["mse_inv"] == pytest.approx(mse_inv.item(), rel=1e-5)
    assert set(out.terms) == {"ce", "mse_img", "mse_inv"}


def test_mmin_loss_terms_and_weights():
    student, teacher = student_with_teacher("mmin", "utt_fusion")
    student.eval()
    batch = make_batch()
    out = student.training_step(batch, 1)
    t = out.terms
    assert (student.cfg.model_params.mse_weight, student.cfg.model_params.cycle_weight) == (4.0, 2.0)
    assert out.loss.item() == pytest.approx(t["ce"] + 4 * t["mse_img"] + 2 * t["mse_cycle"], rel=1e-5)
    logits, fused, recon = student(batch)
    cycle, _ = student.netAE_cycle(recon)
    assert t["mse_cycle"] == pytest.approx(F.mse_loss(cycle, fused).item(), rel=1e-5)
    with torch.no_grad():
        zero_v = teacher.netV(torch.zeros_like(batch.v[:1]))[0]
        target = student.teacher_targets(batch, full=False)[0]["v"]
        for i in range(len(batch)):
            want = zero_v if batch.mask[i, 1] else teacher.netV(batch.v[i:i + 1])[0]
            assert torch.allclose(target[i], want, atol=1e-5)


@pytest.mark.parametrize("variant", ["head", "paper"])
def test_ifim_variants_train_the_expected_decoders(variant):
    student, _ = student_with_teacher("ifmmin", "utt_shared", f"model_params.ifim_variant={variant}")
    student.train()
    student.training_step(make_batch(), 1).loss.backward()
    grads = [any(p.grad is not None for p in getattr(student.netAE, f"decoder_{i}").parameters()) for i in range(5)]
    assert grads == ([True] * 5 if variant == "head" else [False] * 4 + [True])
    assert student.netA.rnn.weight_ih_l0.grad is not None


# --------------------------------------------------------------------------- fast path == slow path


def _run(model, batch):
    model.zero_grad()
    out = model.training_step(batch, 1)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _double(batch: Batch) -> Batch:
    batch.a, batch.v, batch.l = batch.a.double(), batch.v.double(), batch.l.double()
    return batch


@pytest.mark.parametrize("name, teacher", [("ifmmin", "utt_shared"), ("mmin", "utt_fusion")])
def test_teacher_cache_and_missing_shortcut_are_exact(name, teacher):
    # float64, so that "equal" means the same math: float32 rounding of the large untrained losses
    # would otherwise hide a real difference.
    no_dropout = ["model_params.cls_dropout=0.0", "model_params.text_dropout=0.0"]
    fast, _ = student_with_teacher(name, teacher, *no_dropout)
    slow, _ = student_with_teacher(name, teacher, *no_dropout, "model_params.teacher_cache=false",
                                   "model_params.fast_missing=false")
    slow.load_state_dict(fast.state_dict())
    fast.double().train()
    slow.double().train()
    rows = [3, 1, 4, 0, 5, 9, 2, 6]
    # Same utterances twice (the second pass is served from the cache), then a longer A padding,
    # which must be a cache miss rather than a stale hit.
    for steps in ((9, 6, 7), (9, 6, 7), (11, 6, 7)):
        batch = _double(make_batch(steps=steps, index=rows))
        batch.v, batch.l = _double(make_batch(index=rows)).v, _double(make_batch(index=rows)).l
        out_f, grad_f = _run(fast, batch)
        out_s, grad_s = _run(slow, batch)
        assert torch.allclose(out_f.logits, out_s.logits, rtol=1e-9, atol=1e-9)
        assert out_f.loss.item() == pytest.approx(out_s.loss.item(), rel=1e-10)
        assert out_f.terms == pytest.approx(out_s.terms, rel=1e-10)
        assert grad_f.keys() == grad_s.keys()
        for k in grad_f:
            assert torch.allclose(grad_f[k], grad_s[k], rtol=1e-8, atol=1e-9), k
    assert fast.cache.hits >= 2 * len(rows)  # V and L of the repeated batches
    fast.eval()
    slow.eval()
    assert torch.allclose(fast.predict_logits(batch), slow.predict_logits(batch), rtol=1e-9, atol=1e-9)


def test_dropout_is_still_drawn_per_sample_for_missing_text():
    model = small_model("utt_fusion", "model_params.cls_dropout=0.0", "model_params.text_dropout=0.5").train()
    for conv in model.netL.convs:  # non-zero biases, so the encoding of zeros is not all zero
        torch.nn.init.normal_(conv.bias)
    batch = make_batch(masks=[[1, 1, 0]] * 8)  # every sample lacks L
    emb = model.netL.head(model.netL.features(torch.zeros(8, 7, 7)))
    from mer_lib.models.encoding import encode_masked

    got = encode_masked(model.netL, batch.l, batch.mask[:, 2], batch.lengths[:, 2], fast=True)
    assert emb.shape == got.shape
    assert not torch.allclose(got[0], got[1])  # not one dropout mask broadcast to the batch


# --------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("name, batch, epochs, beta1, clip, dropout", [
    ("utt_fusion", 128, (10, 10), 0.9, 0.5, 0.3), ("utt_shared", 64, (10, 10), 0.9, 0.5, 0.3),
    ("mmin", 128, (30, 30), 0.5, 1.0, 0.5), ("ifmmin", 128, (20, 20), 0.5, 1.0, 0.5)])
def test_reference_recipes(name, batch, epochs, beta1, clip, dropout):
    cfg = load_config(name)
    assert cfg.recipe == "faithful" and cfg.train.select_on == "val"
    assert (cfg.train.batch_size, (cfg.train.niter, cfg.train.niter_decay)) == (batch, epochs)
    assert (cfg.train.lr, cfg.train.beta1, cfg.train.weight_decay, cfg.train.grad_clip) == (2e-4, beta1, 0.0, clip)
    assert cfg.model_params.cls_dropout == dropout and cfg.model_params.lstm_pool == "maxpool"
    assert not cfg.model_params.availability_mask


def test_improved_recipes_and_their_effects():
    cfg = load_config("ifmmin", recipe_path("ifmmin_improved"))
    assert cfg.recipe == "improved" and cfg.model_params.lstm_pool == "masked_maxpool"
    assert cfg.model_params.availability_mask and cfg.train.batch_size == 128
    assert load_config("utt_shared", recipe_path("utt_shared_improved")).model_params.cmd_variant == "scaled"
    student, _ = student_with_teacher("ifmmin", "utt_shared", "model_params.lstm_pool=masked_maxpool",
                                      "model_params.availability_mask=true")
    student.eval()
    assert student.netC.module[0].in_features == 5 * 8 + 3
    batch = make_batch()
    padded = make_batch()
    padded.a = torch.cat([batch.a, torch.zeros(8, 5, 6)], dim=1)  # more padding changes nothing
    assert torch.allclose(student.predict_logits(batch), student.predict_logits(padded), atol=1e-5)
    out = student.training_step(padded, 1)
    assert math.isfinite(out.loss.item())


def test_models_run_on_a_real_loader_batch(tiny_data):
    from mer_lib.data.dataset import FoldData
    from mer_lib.data.featureset import FeatureStore

    fold = FoldData(FeatureStore(tiny_data), 1)
    batch = next(iter(fold.loader("trn", batch_size=16, conditions="random_missing", shuffle=True)))
    torch.manual_seed(0)
    teacher = build_model(load_config("utt_shared", overrides=["model_params.text_dropout=0.0",
                                                                "model_params.cls_dropout=0.0"]))
    fast = build_model(load_config("ifmmin", overrides=["model_params.cls_dropout=0.0"]))
    slow = build_model(load_config("ifmmin", overrides=["model_params.cls_dropout=0.0",
                                                         "model_params.teacher_cache=false",
                                                         "model_params.fast_missing=false"]))
    fast.attach_teacher(teacher)
    slow.attach_teacher(teacher)
    slow.load_state_dict(fast.state_dict())
    fast.eval()
    slow.eval()
    a, b = fast.training_step(batch, 1), slow.training_step(batch, 1)
    assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-5)
    assert torch.allclose(a.logits, b.logits, rtol=1e-4, atol=1e-4)


def _replicated(n_utts: int = 3, noisy: bool = False) -> Batch:
    """An evaluation batch: each utterance under all 7 conditions, utterance-major (as the loader builds it)."""
    conds = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]]
    base = make_batch(masks=[[1, 1, 1]] * n_utts)
    pick = torch.arange(n_utts).repeat_interleave(len(conds))
    a = base.a[pick].clone()
    if noisy:  # noisy evaluation corrupts a missing modality differently in each (utterance, condition)
        lacks_a = torch.tensor([c[0] == 0 for c in conds] * n_utts)
        a[lacks_a] += 0.1 * torch.randn_like(a[lacks_a])
    return Batch(a=a, v=base.v[pick], l=base.l[pick], mask=torch.tensor(conds * n_utts, dtype=torch.float32),
                 lengths=base.lengths[pick], label=base.label[pick], index=pick, ids=[f"u{i}" for i in pick.tolist()])


@pytest.mark.parametrize("name", ["utt_fusion", "utt_shared", "mmin", "ifmmin"])
@pytest.mark.parametrize("noisy", [False, True])
def test_evaluation_encodes_each_utterance_once_and_exactly(name: str, noisy: bool) -> None:
    torch.manual_seed(0)
    model = small_model(name).eval()
    batch = _replicated(noisy=noisy)
    unique = Batch(batch.a, batch.v, batch.l, batch.mask, batch.lengths, batch.label,
                   torch.arange(len(batch)), batch.ids)  # distinct ids: nothing to share
    sizes: list[int] = []
    original = model.netA.features
    model.netA.features = lambda x, lengths=None: (sizes.append(x.shape[0]), original(x, lengths))[1]
    with torch.no_grad():
        shared = model.predict_logits(batch)
        real = sum(sizes)
        sizes.clear()
        alone = model.predict_logits(unique)
    assert torch.allclose(shared, alone, atol=1e-6)
    # A is present in 4 of the 7 conditions: 12 rows, 3 distinct utterances (+1 zero sequence each call)
    assert sum(sizes) == 12 + 1
    assert real == 3 + 1  # rows where A is present are clean copies in both cases
    if noisy:  # as the noise injector leaves them: A marked available everywhere, 9 rows corrupted
        batch.mask[:, 0] = 1.0
        sizes.clear()
        with torch.no_grad():
            again = model.predict_logits(Batch(batch.a, batch.v, batch.l, batch.mask, batch.lengths, batch.label,
                                               torch.arange(21), batch.ids))
            assert torch.allclose(model.predict_logits(batch), again, atol=1e-6)
        assert sizes[-1] == 3 + 9  # 3 clean utterances once + the 9 corrupted rows alone
    model.train()
    sizes.clear()
    model.predict_logits(batch)  # training mode (dropout): every row is encoded
    assert sum(sizes) == (21 if noisy else 12 + 1)


# --------------------------------------------------------------------------- improved options (issue 12)


def test_variance_preserving_init_keeps_the_cascade_output_at_the_input_scale():
    """The reference init grows the variance ~4x per block; ae_init: variance_preserving keeps it near 1."""
    batch = make_batch()
    ratios = {}
    for init in ("reference", "variance_preserving"):
        student, _ = student_with_teacher("ifmmin", "utt_shared", f"model_params.ae_init={init}")
        student.eval()
        with torch.no_grad():
            emb = student.encode_student(batch)
            fused = torch.cat([emb[m] for m in ("a", "l", "v")], dim=-1)
            _, recon, _ = student(batch)
        ratios[init] = float(recon.var() / fused.var())
    assert ratios["reference"] > 4 * ratios["variance_preserving"]  # ~1000x at the paper sizes
    assert ratios["variance_preserving"] < 4
    mmin = small_model("mmin", "model_params.ae_init=variance_preserving")
    last = mmin.netAE_cycle.encoder_0[-1].weight
    assert abs(float(last.detach().std()) - (1 / last.shape[1]) ** 0.5) < 0.3 * (1 / last.shape[1]) ** 0.5


@pytest.mark.parametrize("name, teacher", [("ifmmin", "utt_shared"), ("mmin", "utt_fusion")])
def test_classifier_reads_fused_embeddings_and_training_may_include_full(name, teacher):
    student, _ = student_with_teacher(name, teacher, "model_params.stage2_classifier_input=latents_fused",
                                      "model_params.availability_mask=true", "model_params.stage2_train_full=true")
    assert student.netC.module[0].in_features == 5 * 8 + 3 * EMB + 3
    assert student.train_conditions == "random_missing_or_full"
    assert math.isfinite(student.training_step(make_batch(), 0).loss.item())
    plain, _ = student_with_teacher(name, teacher)
    assert plain.train_conditions == "random_missing" and plain.netC.module[0].in_features == 5 * 8


def test_cmd_warmup_ramps_the_stage1_weight():
    model = small_model("utt_shared", "model_params.cmd_warmup_epochs=4", "model_params.cmd_weight=2.0")
    assert [model.cmd_weight(e) for e in (0, 2, 4, 9)] == [0.0, 1.0, 2.0, 2.0]
    assert small_model("utt_shared").cmd_weight(0) == 1.0


def test_stage1_may_train_on_missing_conditions_with_cmd_on_the_rows_that_have_both():
    """``stage1_train_conditions``: the loader's draw; CMD per pair only where both modalities are real."""
    assert small_model("utt_shared").train_conditions == "full"
    model = small_model("utt_shared", "model_params.stage1_train_conditions=random_missing_or_full").eval()
    assert model.train_conditions == "random_missing_or_full"
    masks = [[1, 1, 1], [1, 1, 1], [1, 0, 1], [1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 0]]
    batch = make_batch(masks=masks)
    _, shared = model(batch)
    both = {("l", "v"): [0, 1, 4], ("l", "a"): [0, 1, 2, 3], ("a", "v"): [0, 1, 7]}
    expected = sum(cmd(shared[i][rows], shared[j][rows]) for (i, j), rows in both.items()) / 3
    assert model.cmd_loss(shared, batch.mask).item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.training_step(batch, 1).terms["cmd"] == pytest.approx(expected.item(), rel=1e-5)
    # a pair with fewer than two rows is left out; nothing left -> 0
    only_lv = torch.tensor([[0, 1, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]], dtype=torch.float32)
    sub = {m: s[:4] for m, s in shared.items()}
    assert model.cmd_loss(sub, only_lv).item() == pytest.approx(cmd(sub["l"][:2], sub["v"][:2]).item(), rel=1e-5)
    assert model.cmd_loss(sub, torch.tensor([[1, 0, 0]] * 4, dtype=torch.float32)).item() == 0.0
    # a full mask is the published loss, bit for bit
    assert torch.equal(model.cmd_loss(shared, torch.ones(8, 3)), model.cmd_loss(shared))
    with pytest.raises(Exception, match="stage1_train_conditions"):
        small_model("utt_shared", "model_params.stage1_train_conditions=random_missing")
