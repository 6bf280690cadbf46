"""The per-fold training loop shared by every model.

Recipe (spec sections 2 and 6): Adam with one param group per sub-network, gradient clipping per
sub-network, the linear-decay schedule stepped once per epoch, model selection on validation UA
(or, loudly labelled, on test UA as the published scripts did).  Stage-1 models train and validate
on full modality; stage-2 models train on one random missing condition per sample per epoch and
validate on the pooled six missing conditions.

Resume: ``last.pt`` is written atomically after every epoch with model, optimiser, scheduler,
history and RNG states; every epoch re-seeds the torch RNG from ``(seed + fold, epoch)`` and the
loaders draw from ``(seed + fold, epoch)``, so a killed run restarted with the same command ends
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import logging
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mer_lib import storage
from mer_lib.conditions import FULL_CONDITION, MISSING_CONDITIONS
from mer_lib.config import ExperimentConfig
from mer_lib.data.dataset import FoldData
from mer_lib.data.featureset import FeatureStore, read_metadata
from mer_lib.inference import checkpoint as ckpt_io
from mer_lib.inference.device import resolve_device, use_threads
from mer_lib.inference.predict import predict_frame
from mer_lib.metrics import condition_metrics
from mer_lib.models.base import MERModel
from mer_lib.models.encoding import prefill_teacher_cache
from mer_lib.models.factory import build_model
from mer_lib.rundir import FoldDir
from mer_lib.training.reproducibility import epoch_seed, package_versions, seed_everything

log = logging.getLogger(__name__)

TEST_CONDITIONS = [*MISSING_CONDITIONS, FULL_CONDITION]


@dataclass
class DataContext:
    """What the engine knows about the data: the shared store, labels and fingerprint."""

    store: FeatureStore
    label_names: tuple[str, ...]
    fingerprint: str
    root: str


@dataclass
class FoldResult:
    """Outcome of one fold."""

    fold: int
    best_epoch: int
    best_score: float
    test_metrics: dict[str, Any]
    out_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)


def linear_decay(niter: int, niter_decay: int):  # returns a lambda for LambdaLR
    """The reference ``linear`` policy: epoch k (1-based) uses lr * (1 - max(0, k - niter) / (niter_decay + 1))."""
    return lambda i: 1.0 - max(0, i + 1 - niter) / float(niter_decay + 1)


def selection_conditions(model: MERModel) -> list[str]:
    """Conditions scored for model selection: full modality for stage 1, the six missing otherwise, a
    specialist's own condition (a model that trains on a list of conditions is selected on them)."""
    if isinstance(model.train_conditions, list):
        return list(model.train_conditions)
    return [FULL_CONDITION] if model.train_conditions == "full" else list(MISSING_CONDITIONS)


def _score(metrics: dict[str, Any], conditions: list[str]) -> dict[str, float]:
    key = "average" if len(conditions) > 1 else conditions[0]
    m = metrics[key]
    return {"wa": float(m["wa"]), "ua": float(m["ua"]), "f1": float(m["f1"])}


def _load_teacher(model: MERModel, teacher_dir: str | None, fold: int, data: DataContext,
                  device: torch.device) -> None:
    if not model.needs_teacher:
        return
    if not teacher_dir:
        raise ckpt_io.CheckpointError(f"model {model.name!r} is a stage-2 model and needs --teacher "
                                      f"(the --out of a {' or '.join(model.teacher_models)} run)")
    teacher, tcfg, tmeta = ckpt_io.load_trained(teacher_dir, device=device, fold=fold)
    if tcfg.model not in model.teacher_models:
        raise ckpt_io.CheckpointError(f"{teacher_dir}: teacher is a {tcfg.model!r} model, but {model.name!r} "
                                      f"needs {' or '.join(model.teacher_models)}")
    if int(tmeta.get("fold", fold)) != fold:
        raise ckpt_io.CheckpointError(f"{teacher_dir}: teacher was trained on fold {tmeta.get('fold')}, not {fold}")
    if tmeta.get("data_fingerprint") and tmeta["data_fingerprint"] != data.fingerprint:
        raise ckpt_io.CheckpointError(f"{teacher_dir}: teacher was trained on other data (fingerprint "
                                      f"{tmeta['data_fingerprint'][:12]} vs {data.fingerprint[:12]})")
    model.attach_teacher(teacher)


def precision_context(cfg: ExperimentConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of ``train.precision`` (bf16) or ``train.amp`` (fp16, CUDA); else none.

    bf16 autocast runs matrix products, LSTMs and convolutions in bfloat16 (AVX-512 BF16 on these
    CPUs, tensor cores on a GPU) with fp32 weights and optimiser; it is a named option because its
    scores differ from fp32 within a tolerance measured in bench/README.md.
    """
    if cfg.train.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if cfg.train.amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


def evaluate_split(model: MERModel, fold_data: FoldData, split: str, conditions: list[str], cfg: ExperimentConfig,
                   device: torch.device, label_names: tuple[str, ...]):  # (DataFrame, dict)
    """Predictions and per-condition metrics of one split under ``conditions``."""
    loader = fold_data.loader(split, batch_size=cfg.train.eval_batch_size, conditions=conditions, device=device)
    with precision_context(cfg, device):
        pred = predict_frame(model, loader, device=device, label_names=label_names)
    return pred, condition_metrics(pred, len(label_names))


def train_fold(cfg: ExperimentConfig, data: DataContext, fold: int, out_dir: str | Path,
               teacher_dir: str | None = None, progress: bool | None = None) -> FoldResult:
    """Train (or resume, or skip if finished) one fold and write its outputs to ``out_dir``.

    Outputs: ``best.pt``, ``last.pt``, ``config.yaml``, ``metrics.csv``, ``tb/``, ``predictions_tst.csv``,
    ``test_metrics.json`` (WA/UA/F1 per condition, ``average`` = pooled six missing conditions).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fold_dir = FoldDir(out)
    done = fold_dir.test_metrics_json
    cfg_hash = cfg.hash()
    if done.exists():
        finished = json.loads(done.read_text())
        if finished.get("config_hash") != cfg_hash:
            raise ckpt_io.CheckpointError(f"{out}: holds a finished run with another config "
                                          f"({finished.get('config_hash')} vs {cfg_hash}); use a new --out")
        log.info("fold %d already finished in %s; skipping", fold, out)
        return FoldResult(fold, finished["best_epoch"], finished["best_score"], finished, out)

    device = resolve_device(cfg.train.device)
    use_threads(cfg.train.threads)
    seed_everything(cfg.train.seed + fold, cfg.train.deterministic)
    fold_data = FoldData(data.store, fold, norm_a=cfg.data.norm_a, num_classes=len(data.label_names))
    model = build_model(cfg).to(device)
    _load_teacher(model, teacher_dir, fold, data, device)
    nets = model.subnets()
    groups = [{"params": [p for p in net.parameters() if p.requires_grad], "name": name}
              for name, net in nets.items()]
    groups = [g for g in groups if g["params"]]
    opt_cls = torch.optim.AdamW if cfg.train.weight_decay > 0 else torch.optim.Adam
    optimizer = opt_cls(groups, lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2),
                        weight_decay=cfg.train.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay(cfg.train.niter, cfg.train.niter_decay))
    # fp16 needs loss scaling; bf16 (train.precision) has fp32's range and does not
    use_amp = cfg.train.amp and device.type == "cuda" and cfg.train.precision == "fp32"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    total_epochs = cfg.train.niter + cfg.train.niter_decay
    sel_conds = selection_conditions(model)
    sel_split = "tst" if cfg.train.select_on == "test_leak" else "val"
    if sel_split == "tst":
        log.warning("train.select_on=test_leak: selecting the epoch on TEST UA (the published protocol); "
                    "test scores of this run are optimistic and labelled so")
    meta = {"fold": fold, "model": cfg.model, "data_fingerprint": data.fingerprint,
            "label_names": list(data.label_names), "feature_spec": data.store.spec.to_dict(),
            "config_hash": cfg_hash, "select_on": cfg.train.select_on,
            "versions": package_versions(), "data_root": data.root,
            # What `mer predict` needs to score new inputs without the training data: this fold's A
            # statistics and how the features were made (extractor settings; none for synthetic data).
            "norm_a": {"mean": torch.from_numpy(fold_data.mean.copy()), "std": torch.from_numpy(fold_data.std.copy())},
            "features": {k: v for k, v in read_metadata(data.store.root).items()
                         if k in ("generator", "settings", "licences")}}

    start_epoch, best_score, best_epoch, history = 0, -math.inf, -1, []
    last_path = fold_dir.last
    if last_path.exists():
        state = ckpt_io.load(last_path, map_location=device)
        if state.get("meta", {}).get("config_hash") != cfg_hash:
            old = state.get("meta", {}).get("config_hash")
            raise ckpt_io.CheckpointError(f"{last_path}: checkpoint of a run with another config "
                                          f"({old} vs {cfg_hash}); use a new --out")
        if state["meta"].get("data_fingerprint") != data.fingerprint:
            raise ckpt_io.CheckpointError(f"{last_path}: checkpoint was trained on other data; use a new --out")
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best_score, best_epoch = state["epoch"] + 1, state["best_score"], state["best_epoch"]
        history = list(state["history"])
        del state  # Adam's moments and a copy of the weights, not needed for the rest of training
        log.info("fold %d: resuming from %s at epoch %d", fold, last_path, start_epoch + 1)
    fold_dir.write_config(cfg.to_dict())

    writer = None
    if cfg.train.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter  # heavy: only when train.tensorboard is on

            writer = SummaryWriter(str(out / "tb"), purge_step=start_epoch + 1)
        except ImportError:
            log.info("tensorboard not installed; skipping event files")
    train_loader = fold_data.loader("trn", batch_size=cfg.train.batch_size, conditions=model.train_conditions,
                                    shuffle=True, seed=cfg.train.seed + fold, device=device)
    show = sys.stderr.isatty() if progress is None else progress
    if start_epoch < total_epochs:
        # Stage 2: the frozen teacher's targets of every training utterance before the first step (at
        # the training batch size: larger batches are slower per row here, their LSTM state leaves cache).
        t0 = time.perf_counter()
        seen = prefill_teacher_cache(model, fold_data.loader("trn", batch_size=cfg.train.batch_size,
                                                             conditions="full", device=device,
                                                             pad_to_split_max=True))
        if seen:
            log.info("fold %d: teacher targets of %d training utterances cached in %.1f s", fold, seen,
                     time.perf_counter() - t0)

    for epoch in range(start_epoch, total_epochs):
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(cfg.train.seed + fold, epoch))
        train_loader.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        n_items = 0
        bar = tqdm(train_loader, desc=f"fold {fold} epoch {epoch + 1}/{total_epochs}", leave=False,
                   disable=not show, unit="batch")
        for batch in bar:
            batch = batch.to(device)
            with precision_context(cfg, device):
                step = model.training_step(batch, epoch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(step.loss).backward()
            scaler.unscale_(optimizer)
            for net in nets.values():
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            b = len(batch)
            n_items += b
            for k, v in {"loss": float(step.loss.detach()), **step.terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v) * b
            bar.set_postfix(loss=f"{sums['loss'] / n_items:.4f}")
            del batch, step  # not held while the next batch is built
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        train_secs = time.perf_counter() - t0
        _, val_metrics = evaluate_split(model, fold_data, "val", sel_conds, cfg, device, data.label_names)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr,
                               **{f"train_{k}": v / max(n_items, 1) for k, v in sums.items()},
                               **{f"val_{k}": v for k, v in _score(val_metrics, sel_conds).items()}}
        if sel_split == "tst":
            _, tst_metrics = evaluate_split(model, fold_data, "tst", sel_conds, cfg, device, data.label_names)
            row.update({f"test_{k}": v for k, v in _score(tst_metrics, sel_conds).items()})
        row["train_samples_per_s"] = n_items / train_secs
        row["seconds"] = time.perf_counter() - t0
        score = row[f"{'test' if sel_split == 'tst' else 'val'}_ua"]
        improved = score > best_score
        if improved:
            best_score, best_epoch = score, epoch + 1
            ckpt_io.save({"model": ckpt_io.model_state(model), "config": cfg.to_dict(),
                          "meta": {**meta, "epoch": epoch + 1, "selection_score": score}}, fold_dir.best)
        history.append(row)
        terms = " ".join(f"{k[6:]}={v:.4f}" for k, v in row.items()
                         if k.startswith("train_") and k != "train_samples_per_s")
        log.info("fold %d epoch %d/%d lr=%.2e %s | val WA=%.4f UA=%.4f F1=%.4f%s | %.0f samples/s%s",
                 fold, epoch + 1, total_epochs, lr, terms, row["val_wa"], row["val_ua"], row["val_f1"],
                 f" | TEST-SELECTED UA={row['test_ua']:.4f}" if sel_split == "tst" else "",
                 row["train_samples_per_s"], " *" if improved else "")
        if writer is not None:
            for k, v in row.items():
                if k != "epoch":
                    writer.add_scalar(k.replace("_", "/", 1), v, epoch + 1)
            writer.flush()
        _write_history(fold_dir.history_csv, history)
        # The resume state (NMER: ~200 MB with Adam's moments) every checkpoint_every epochs and after
        # the last; a run resumed from an older one re-trains the epochs since, bit-identically.
        if (epoch + 1) % cfg.train.checkpoint_every == 0 or epoch + 1 == total_epochs:
            ckpt_io.save({"model": ckpt_io.model_state(model), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                          "best_score": best_score, "best_epoch": best_epoch, "history": history,
                          "rng": {"torch": torch.get_rng_state()}, "config": cfg.to_dict(), "meta": meta},
                         last_path)
    if writer is not None:
        writer.close()
    # The test predictions reload the selected epoch: free the trained model, its optimiser state and
    # teacher cache first (the optimiser sits in a reference cycle, hence the collection).
    del model, nets, groups, optimizer, scheduler, scaler
    gc.collect()
    return _finish_fold(cfg, data, fold, out, fold_data, best_epoch, best_score, history, device)


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    storage.write_text(str(path), buf.getvalue(), overwrite=True)


def _finish_fold(cfg: ExperimentConfig, data: DataContext, fold: int, out: Path, fold_data: FoldData,
                 best_epoch: int, best_score: float, history: list[dict[str, Any]], device: torch.device) -> FoldResult:
    """Reload the selected epoch and write test predictions and ``test_metrics.json``."""
    model, _, _ = ckpt_io.load_trained(FoldDir(out).best, device=device)
    pred, metrics = evaluate_split(model, fold_data, "tst", TEST_CONDITIONS, cfg, device, data.label_names)
    pred.insert(0, "fold", fold)
    storage.write_text(str(FoldDir(out).predictions), pred.to_csv(index=False), overwrite=True)
    result = {**metrics, "fold": fold, "best_epoch": best_epoch, "best_score": best_score,
              "select_on": cfg.train.select_on, "model": cfg.model, "config_hash": cfg.hash(),
              "data_fingerprint": data.fingerprint}
    FoldDir(out).write_test_metrics(result)
    avg = metrics.get("average", metrics.get(FULL_CONDITION))
    log.info("fold %d done: best epoch %d (%s UA %.4f); test average WA=%.4f UA=%.4f, full UA=%.4f",
             fold, best_epoch, "TEST" if cfg.train.select_on == "test_leak" else "val", best_score,
             avg["wa"], avg["ua"], metrics[FULL_CONDITION]["ua"])
    return FoldResult(fold, best_epoch, best_score, result, out, history)
