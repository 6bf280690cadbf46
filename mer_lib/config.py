"""Typed experiment configuration: YAML (always safe-loaded) -> validated dataclasses.

Every recipe value of the reference code is a field here with the faithful value as default;
deviations are named fields whose defaults are documented in ``configs/*.yaml``.  Unknown keys,
wrong types and out-of-range values are rejected with an error naming the key and the file.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mer_lib.conditions import ALL_CONDITIONS
from mer_lib.noise.table import NOISE_TYPES


class ConfigError(ValueError):
    """A configuration file or override is invalid (the message names key and source)."""


def _f(default: Any, *, min: float | None = None, max: float | None = None,
       choices: tuple[Any, ...] | None = None, help: str = "") -> Any:
    """Dataclass field with validation metadata."""
    meta = {"min": min, "max": max, "choices": choices, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    """Where the feature set is and how it is read."""

    root: str = _f("", help="feature-set directory or gs:// URI")
    feature_a: str = _f("comparE", help="acoustic feature name: A/<name>.h5")
    feature_v: str = _f("denseface", help="visual feature name: V/<name>.h5")
    feature_l: str = _f("bert_large", help="lexical feature name: L/<name>.h5")
    dim_a: int = _f(130, min=1)
    dim_v: int = _f(342, min=1)
    dim_l: int = _f(1024, min=1)
    num_classes: int = _f(4, min=2)
    norm_a: str = _f("trn", choices=("trn", "none"), help="z-normalise A with the fold's train stats")
    num_workers: int = _f(0, min=0)


@dataclass
class ModelParams:
    """Parameters every model has: the modality encoders (A, V: LSTM; L: TextCNN) and the classifier.

    Each model owns one section (a subclass below, registered in :data:`MODEL_SPECS`) holding exactly
    the parameters it reads, so a parameter added for one model changes no other model's config or
    config hash.
    """

    embd_size: int = _f(128, min=1)
    lstm_pool: str = _f("maxpool", choices=("maxpool", "masked_maxpool"),
                        help="maxpool = over pads too (faithful); masked_maxpool ignores pads")
    text_kernels: list = _f([3, 4, 5])
    text_dropout: float = _f(0.5, min=0.0, max=1.0)
    cls_layers: list = _f([128, 128])
    cls_dropout: float = _f(0.3, min=0.0, max=1.0)
    cls_bn: bool = _f(False)
    availability_mask: bool = _f(False, help="feed an explicit (a,v,l) availability mask (improved)")
    fast_missing: bool = _f(True, help="encode a missing (all-zero) modality once per batch and scatter it "
                            "to the samples lacking it (exact; false = encode every zero sequence)")


@dataclass
class UttFusionParams(ModelParams):
    """``utt_fusion``: MMIN stage 1, the zero-filled baseline."""

    specialist_condition: str = _f("", choices=("", *ALL_CONDITIONS),
                                   help="'' = train and select on full modality (published); a condition name "
                                   "(e.g. av) trains and selects on that one condition: a per-condition "
                                   "specialist, what the network reaches there with nothing else to learn "
                                   "(bench/condition_ceiling.py)")


@dataclass
class SharedEncoderParams(ModelParams):
    """The shared (invariant) encoder of IF-MMIN and NMER."""

    shared_encoder: str = _f("default", choices=("default", "v0200"),
                             help="default: 2x(Linear, LeakyReLU); v0200: 4 Linear with Sigmoid+Dropout")
    shared_dropout: float = _f(0.3, min=0.0, max=1.0)


@dataclass
class CMDParams(SharedEncoderParams):
    """Stage 1 of IF-MMIN and NMER: invariant features learned with the central moment discrepancy."""

    cmd_k: int = _f(5, min=1)
    cmd_variant: str = _f("unscaled", choices=("unscaled", "scaled"),
                          help="unscaled = reference; scaled = original CMD with 1/|b-a|^k")
    cmd_eps: float = _f(1e-12, min=0.0, help="epsilon inside the CMD norms (0 = reference, NaN-prone)")
    cmd_weight: float = _f(1.0, min=0.0)
    cmd_bounds: list = _f([], help="scaled CMD: feature bounds [a, b]; empty = the batch's joint range")


@dataclass
class UttSharedParams(CMDParams):
    """``utt_shared``: IF-MMIN stage 1."""

    cmd_warmup_epochs: int = _f(0, min=0, help="stage 1: ramp the CMD weight linearly from 0 over this many epochs "
                                "(0 = published: full weight from the first step)")
    cmd_into_encoders: bool = _f(True, help="IF-MMIN stage 1: the CMD gradient reaches the modality encoders "
                                 "(published); false = it trains the shared encoder only")
    stage1_train_conditions: str = _f("full", choices=("full", "random_missing_or_full"),
                                      help="IF-MMIN stage 1 trains on full modality (published) or on one of the "
                                      "six missing conditions or full per sample (zero-filled; CMD per pair on the "
                                      "samples that have both modalities)")


@dataclass
class NMERPretrainParams(CMDParams):
    """``nmer_pretrain``: NMER stage 1 (invariant and specific encoders)."""

    diffusion_regulariser: bool = _f(False, help="NMER stage-1 diffusion branch (needs diffusers)")


@dataclass
class Stage2Params(ModelParams):
    """Every stage-2 model: a frozen teacher and the missing conditions it trains on."""

    teacher_cache: bool = _f(True, help="compute frozen-teacher targets once per utterance where exact")
    stage2_train_full: bool = _f(False, help="stage 2 also trains on full modality (each sample under one of the "
                                 "six missing conditions or full); published: the six missing ones only")


@dataclass
class ImaginationParams(Stage2Params):
    """MMIN and IF-MMIN: the imagination module (cascaded residual autoencoders)."""

    ae_layers: list = _f([256, 128, 64])
    ae_blocks: int = _f(5, min=1)
    ae_init: str = _f("reference", choices=("reference", "variance_preserving"),
                      help="IF-MMIN/MMIN imagination cascade init: reference = kaiming gain sqrt(2) on every Linear "
                      "(the output variance grows ~4x per block, ~10^3 over five); variance_preserving = gain 1 "
                      "on the Linears that no activation follows")
    mse_weight: float = _f(1.0, min=0.0, help="weight of the imagination / reconstruction MSE")
    stage2_classifier_input: str = _f("latents", choices=("latents", "latents_fused"),
                                      help="IF-MMIN/MMIN classifier input: latents (published) or [latents, fused "
                                      "embeddings], so the available modalities reach the classifier directly")


@dataclass
class MMINParams(ImaginationParams):
    """``mmin``."""

    cycle_weight: float = _f(2.0, min=0.0, help="MMIN cycle-consistency weight")


@dataclass
class IFMMINParams(ImaginationParams, SharedEncoderParams):
    """``ifmmin``: IF-MMIN stage 2 (the imagination module reads the invariant features)."""

    ifim_variant: str = _f("head", choices=("head", "paper"),
                           help="IF-IM cascade: head = 2024-09 code; paper = paper-era code")
    invariant_weight: float = _f(100.0, min=0.0, help="IF-MMIN w_inv (100 intended; NMER uses 1)")


@dataclass
class NMERParams(Stage2Params, SharedEncoderParams):
    """``nmer``: NMER stage 2 (the VAE over the invariant features)."""

    mse_weight: float = _f(1.0, min=0.0, help="weight of the imagination / reconstruction MSE")
    invariant_weight: float = _f(100.0, min=0.0, help="IF-MMIN w_inv (100 intended; NMER uses 1)")
    vae_layers: int = _f(5, min=1)
    vae_heads: int = _f(8, min=1)
    vae_ff: int = _f(128, min=1)
    vae_latent: int = _f(64, min=1)
    vae_dropout: float = _f(0.1, min=0.0, max=1.0)
    vae_attention: str = _f("per_sample", choices=("per_sample", "cross_batch"),
                            help="cross_batch = published (samples of a batch attend to each other)")
    kl_reduction: str = _f("mean", choices=("mean", "sum"), help="sum = published")
    kl_weight: float = _f(1.0, min=0.0)
    eval_sample_z: bool = _f(False, help="sample z at evaluation (published) instead of using mu")
    kl_warmup_epochs: int = _f(0, min=0, help="ramp the KL weight linearly from 0 over this many epochs "
                               "(0 = published: full weight from the first step)")
    vae_decoder_output: str = _f("sigmoid", choices=("sigmoid", "tanh", "linear"),
                                 help="VAE decoder output activation (sigmoid = published; its (0, 1) range "
                                 "cannot reach the teacher's specific features)")
    vae_init: str = _f("reference", choices=("reference", "pytorch"),
                       help="reference = published kaiming re-init of every Linear, transformer included; "
                       "pytorch = the VAE keeps PyTorch's own initialisation")
    nmer_classifier_input: str = _f("reconstruction", choices=("reconstruction", "residual", "concat"),
                                    help="what the NMER classifier reads: reconstruction = x_rec (published); "
                                    "residual = x_rec + fused (the published code before 60da665); "
                                    "concat = [x_rec, c]")


@dataclass
class AnyModelParams(UttFusionParams, UttSharedParams, NMERPretrainParams, MMINParams, IFMMINParams, NMERParams):
    """Every model parameter of every model: validates a config layer before the model is known."""


@dataclass(frozen=True)
class ModelSpec:
    """One model's registration: where its class lives and which parameter section it reads."""

    #: "module:Class" under ``mer_lib.models`` (the factory imports it on demand)
    ref: str
    params: type[ModelParams]


#: Every trainable model, registered once (the CLI choices, the factory and the parameter sections
#: derive from it). Kept here, in a leaf without torch, so the CLI offers the names fast.
MODEL_SPECS: dict[str, ModelSpec] = {
    "utt_fusion": ModelSpec("utt_fusion:UttFusion", UttFusionParams),
    "utt_fusion_dropout": ModelSpec("utt_fusion:UttFusionDropout", ModelParams),
    "utt_shared": ModelSpec("utt_shared:UttShared", UttSharedParams),
    "mmin": ModelSpec("mmin:MMIN", MMINParams),
    "ifmmin": ModelSpec("ifmmin:IFMMIN", IFMMINParams),
    "nmer_pretrain": ModelSpec("nmer:NMERPretrain", NMERPretrainParams),
    "nmer": ModelSpec("nmer:NMER", NMERParams),
}
#: name -> "module:Class" (see :data:`MODEL_SPECS`).
MODEL_CLASSES: dict[str, str] = {name: spec.ref for name, spec in MODEL_SPECS.items()}
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_SPECS)


def params_class(model: str) -> type[ModelParams]:
    """The parameter section of ``model`` (:class:`ModelParams` for a name no model has)."""
    spec = MODEL_SPECS.get(model)
    return spec.params if spec else ModelParams


@dataclass
class TrainConfig:
    """Optimisation recipe (reference values by default) and run settings."""

    batch_size: int = _f(128, min=1)
    eval_batch_size: int = _f(512, min=1)
    niter: int = _f(10, min=0, help="epochs at the initial learning rate")
    niter_decay: int = _f(10, min=0, help="epochs of linear decay")
    lr: float = _f(2e-4, min=0.0)
    beta1: float = _f(0.9, min=0.0, max=1.0)
    beta2: float = _f(0.999, min=0.0, max=1.0)
    weight_decay: float = _f(0.0, min=0.0, help="reference passes 1e-5 but never applies it")
    grad_clip: float = _f(0.5, min=0.0, help="clip_grad_norm_ per sub-network")
    select_on: str = _f("val", choices=("val", "test_leak"),
                        help="test_leak = the published protocol: selects the epoch on TEST UA")
    seed: int = _f(0, min=0)
    deterministic: bool = _f(False)
    device: str = _f("auto", choices=("auto", "cpu", "cuda"))
    amp: bool = _f(False, help="mixed precision (CUDA only)")
    precision: str = _f("fp32", choices=("fp32", "bf16"),
                        help="fp32 = faithful; bf16 = bfloat16 autocast of training and evaluation forwards on "
                        "CPU (AVX-512 BF16) or GPU: faster, scores within a measured tolerance (bench/README.md)")
    threads: int = _f(0, min=0, help="torch intra-op threads (0 = the CPUs this process may use: its cgroup "
                      "quota or affinity, not the node's core count)")
    checkpoint_every: int = _f(1, min=1, help="write the resume state (last.pt) every N epochs and after the last")
    tensorboard: bool = _f(True)


@dataclass
class NoiseConfig:
    """Training/evaluation noise settings (NMER noise scheduler); the types come from the noise table."""

    type: str = _f("gaussian", choices=NOISE_TYPES, help="a row of mer_lib.noise.table.NOISE_TABLE")
    schedule: str = _f("scaled_linear", choices=("scaled_linear", "linear", "squaredcos_cap_v2", "sigmoid"))
    beta_start: float = _f(0.01, min=0.0, max=1.0)
    beta_end: float = _f(0.5, min=0.0, max=1.0)
    steps: int = _f(100, min=1, help="T: the noise-intensity axis of the NMER paper")
    level: float = _f(1.0, min=0.0, max=1.0,
                      help="share of the schedule used (t < ceil(level*T)); scales drop_rate; 1 = published")
    per_sample_t: bool = _f(False, help="one t per sample instead of one per batch (published)")
    zero_fill_share: float = _f(0.0, min=0.0, max=1.0,
                                help="training only: share of the missing modalities left missing (zero-filled, "
                                "as the six-condition protocol tests them) instead of noised; 0 = published")
    impulse_freq: float = _f(0.3, min=0.0, max=1.0)
    drop_rate: float = _f(0.3, min=0.0, max=1.0, help="frame_drop / burst: share of frames affected")
    burst_len: int = _f(5, min=1)
    mixture: list = _f(["gaussian", "impulse"])
    curriculum: str = _f("constant", choices=("constant", "linear"),
                         help="level over epochs: constant (published) or linear warm-up")
    curriculum_start: float = _f(0.2, min=0.0, max=1.0)
    curriculum_epochs: int = _f(10, min=1, help="linear curriculum: epochs to reach the final level")
    noise_pads: bool = _f(False, help="also corrupt the batch zero-padding (published; batch-dependent)")
    modalities: list = _f(["a", "v", "l"], help="modalities that may be corrupted")
    fresh_eval_noise: bool = _f(False, help="draw new noise at every evaluation (published)")
    seed: int = _f(1234, min=0)


@dataclass
class EvalConfig:
    """Evaluation conditions and the primary metric."""

    conditions: list = _f(["a", "v", "l", "av", "al", "vl", "avl"])
    primary_metric: str = _f("average_ua", help="<condition>_<wa|ua|f1>; average = pooled six conditions")
    noise_levels: list = _f([20, 40, 60, 80, 100])


@dataclass
class ExperimentConfig:
    """One training recipe: model name plus all sections."""

    model: str = _f("utt_fusion", choices=MODEL_NAMES)
    recipe: str = _f("faithful", help="free-form recipe label recorded with the model")
    data: DataConfig = field(default_factory=DataConfig)
    model_params: ModelParams = field(default_factory=ModelParams)
    train: TrainConfig = field(default_factory=TrainConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        # The parameter section follows the model: ExperimentConfig(model="nmer") gets NMER's section,
        # keeping the values of the parameters the two sections share.
        section = params_class(self.model)
        if type(self.model_params) is not section:
            own = {f.name for f in dataclasses.fields(section)}
            self.model_params = section(**{f.name: getattr(self.model_params, f.name)
                                           for f in dataclasses.fields(self.model_params) if f.name in own})

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (YAML/JSON serialisable)."""
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short stable hash of the resolved config (recorded with models)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _check_value(cls: type, name: str, value: Any, where: str) -> Any:
    """Type- and range-check one field value; returns the (possibly coerced) value."""
    f = {x.name: x for x in dataclasses.fields(cls)}[name]
    hint = typing.get_type_hints(cls)[name]
    key = f"{where}"
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
    elif hint is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
    meta = f.metadata
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
    if meta.get("min") is not None and isinstance(value, (int, float)) and value < meta["min"]:
        raise ConfigError(f"{key}: {value!r} is below the minimum {meta['min']}")
    if meta.get("max") is not None and isinstance(value, (int, float)) and value > meta["max"]:
        raise ConfigError(f"{key}: {value!r} is above the maximum {meta['max']}")
    return value


def _build(cls: type, raw: dict[str, Any], source: str, prefix: str = "",
           dropped: list[str] | None = None, ignored: list[str] | None = None, *, layer: bool = False) -> Any:
    """Recursively build dataclass ``cls`` from ``raw``.

    Unknown keys raise :class:`ConfigError`, or, when a ``dropped`` list is given, are left out and
    their dotted names appended to it.  ``model_params`` is built as the section of the model named
    in ``raw`` (:func:`params_class`); parameters of other models are validated, left out and
    appended to ``ignored``.  A ``layer`` (one config source, which may not name the model) is
    validated against every model's parameters.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            if dropped is not None:
                dropped.append(dotted)
                continue
            raise ConfigError(f"{source}: unknown config key {dotted!r} (known: {', '.join(sorted(names))})")
        value = _check_value(cls, key, value, f"{source}: {dotted}")
        if cls is ExperimentConfig and key == "model_params":
            section = AnyModelParams if layer else params_class(str(raw.get("model", ExperimentConfig.model)))
            value = _build_params(section, value, source, f"{dotted}.", dropped, ignored)
        elif dataclasses.is_dataclass(hints[key]):
            value = _build(hints[key], value, source, f"{dotted}.", dropped, ignored)
        kwargs[key] = value
    return cls(**kwargs)


def _build_params(section: type[ModelParams], raw: dict[str, Any], source: str, prefix: str,
                  dropped: list[str] | None, ignored: list[str] | None) -> ModelParams:
    """Build one model's parameter ``section``; other models' parameters are checked, then left out."""
    own = {f.name for f in dataclasses.fields(section)}
    catalogue = {f.name for f in dataclasses.fields(AnyModelParams)}
    kept: dict[str, Any] = {}
    for key, value in raw.items():
        if key in catalogue and key not in own:
            _check_value(AnyModelParams, key, value, f"{source}: {prefix}{key}")
            if ignored is not None:
                ignored.append(f"{prefix}{key}")
            continue
        kept[key] = value
    return _build(section, kept, source, prefix, dropped, ignored)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Safe-load a YAML mapping, with errors that name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    return raw


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b=value``; the value is read as YAML (so ``true``, ``3``, ``[1,2]`` work)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: cannot parse value: {exc}") from exc
    return key.strip().split("."), value


def recipe_path(name: str) -> Path:
    """Path of a packaged recipe YAML (``mer_lib/configs/<name>.yaml``)."""
    return Path(__file__).parent / "configs" / f"{name}.yaml"


#: Named recipes: ``faithful`` is each model's packaged ``<model>.yaml``; the others are packaged
#: ``<model>_<recipe>.yaml`` files merged over it.
RECIPES = ("faithful", "improved", "published")


def recipe_file(model: str, recipe: str, *, required: bool = True) -> Path | None:
    """The packaged YAML that turns ``model``'s faithful recipe into ``recipe`` (None for faithful).

    Args:
        model: model name.
        recipe: one of :data:`RECIPES`.
        required: raise when ``model`` has no such recipe; ``False`` falls back to faithful (None), for a
            family whose stage 1 is shared by every recipe (``nmer_pretrain``).

    Raises:
        ConfigError: unknown recipe, or (``required``) no such recipe for ``model``.
    """
    if recipe not in RECIPES:
        raise ConfigError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    if recipe == "faithful":
        return None
    path = recipe_path(f"{model}_{recipe}")
    if path.exists():
        return path
    if required:
        have = sorted(r for r in RECIPES[1:] if recipe_path(f"{model}_{r}").exists())
        raise ConfigError(f"model {model!r} has no {recipe!r} recipe (packaged: faithful"
                          f"{''.join(', ' + r for r in have)})")
    return None


def load_config(model: str | None = None, config_file: str | Path | None = None,
                overrides: list[str] | None = None, *, recipe: str = "faithful",
                recipe_fallback: bool = False) -> ExperimentConfig:
    """Resolve a config: ``model``'s faithful recipe <- the named ``recipe`` <- ``config_file`` <- overrides.

    Args:
        model: model name; its packaged faithful recipe (if any) is the base layer.
        config_file: optional user YAML, merged on top of the recipe.
        overrides: ``key=value`` strings (dotted keys), applied last.
        recipe: one of :data:`RECIPES`; a non-faithful one merges ``<model>_<recipe>.yaml`` over the base.
        recipe_fallback: a model without that recipe keeps its faithful one (a pipeline family whose stage 1
            is shared by every recipe) instead of raising.

    Returns:
        The validated :class:`ExperimentConfig`.

    Raises:
        ConfigError: naming the offending key and source, or a recipe the model does not have.
    """
    raw: dict[str, Any] = {}
    sources: list[tuple[str, dict[str, Any]]] = []
    user = load_yaml(config_file) if config_file else {}
    name = model or user.get("model")
    if name:
        base = recipe_path(str(name))
        if base.exists():
            sources.append((str(base), load_yaml(base)))
    if recipe != "faithful" or recipe not in RECIPES:
        if not name:
            raise ConfigError(f"recipe {recipe!r} needs a model name (--model or a config naming one)")
        named = recipe_file(str(name), recipe, required=not recipe_fallback)
        if named is not None:
            sources.append((str(named), load_yaml(named)))
    if config_file:
        sources.append((str(config_file), user))
    if model:
        sources.append(("--model", {"model": model}))
    for item in overrides or []:
        keys, value = parse_override(item)
        nested: dict[str, Any] = {}
        cur = nested
        for k in keys[:-1]:
            cur = cur.setdefault(k, {})
        cur[keys[-1]] = value
        sources.append((f"--set {item}", nested))
    for source, layer in sources:
        _build(ExperimentConfig, layer, source, layer=True)  # validate each layer on its own: a precise error
        raw = _deep_merge(raw, layer)
    ignored: list[str] = []
    cfg = _build(ExperimentConfig, raw, "config", ignored=ignored)
    if ignored:
        # Shared override lists (the pipeline's, bench scripts') name parameters of several models.
        logging.getLogger(__name__).warning("model %r has no parameter(s) %s: ignored", cfg.model, ", ".join(ignored))
    return cfg


def config_from_dict(raw: dict[str, Any], source: str = "config", strict: bool = True) -> ExperimentConfig:
    """Build a config from a plain dict (for example one stored in a checkpoint).

    Args:
        raw: the config as nested dicts.
        source: where it came from (named in errors).
        strict: reject unknown keys; ``False`` drops them with a warning (a checkpoint written by an
            older version may carry a key that was since removed).  Parameters of other models (the
            one flat ``model_params`` section that versions before the per-model sections stored)
            never reached this model and are left out without a word.
    """
    if strict:
        return _build(ExperimentConfig, raw, source)
    dropped: list[str] = []
    cfg = _build(ExperimentConfig, raw, source, dropped=dropped)
    if dropped:
        logging.getLogger(__name__).warning("%s: ignoring config key(s) this version does not know: %s",
                                            source, ", ".join(dropped))
    return cfg
