"""Config loading: packaged recipes, overrides, and errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mer_lib.config import ConfigError, ExperimentConfig, config_from_dict, load_config
from mer_lib.rundir import BEST


def test_defaults_are_the_reference_values() -> None:
    cfg = ExperimentConfig()
    assert (cfg.data.dim_a, cfg.data.dim_v, cfg.data.dim_l) == (130, 342, 1024)
    assert cfg.train.lr == 2e-4 and cfg.train.weight_decay == 0.0 and cfg.train.select_on == "val"
    assert cfg.noise.beta_start == 0.01 and cfg.noise.beta_end == 0.5 and cfg.noise.steps == 100


def test_overrides_parse_yaml_values_and_nest() -> None:
    cfg = load_config("utt_shared", overrides=["train.batch_size=7", "model_params.cmd_variant=scaled",
                                               "eval.conditions=[a,v]", "train.amp=true"])
    assert cfg.train.batch_size == 7 and cfg.model_params.cmd_variant == "scaled"
    assert cfg.eval.conditions == ["a", "v"] and cfg.train.amp is True


def test_each_model_has_its_own_parameter_section(caplog: pytest.LogCaptureFixture) -> None:
    """A model's config holds only the parameters it reads, so adding one for another model changes
    neither its config nor its hash; another model's parameter is checked, then ignored with a warning."""
    fusion, nmer = load_config("utt_fusion"), load_config("nmer")
    assert not hasattr(fusion.model_params, "vae_layers") and nmer.model_params.vae_layers == 5
    assert "cmd_k" not in fusion.to_dict()["model_params"] and "cmd_k" not in nmer.to_dict()["model_params"]
    assert "cmd_k" in load_config("utt_shared").to_dict()["model_params"]
    with caplog.at_level("WARNING"):
        shared = load_config("utt_fusion", overrides=["model_params.vae_layers=1", "model_params.embd_size=16"])
    assert shared.model_params.embd_size == 16 and shared.hash() == load_config(
        "utt_fusion", overrides=["model_params.embd_size=16"]).hash()
    assert "model 'utt_fusion' has no parameter(s) model_params.vae_layers: ignored" in caplog.text
    with pytest.raises(ConfigError, match="--set model_params.vae_layers=0: model_params.vae_layers: 0 is below"):
        load_config("utt_fusion", overrides=["model_params.vae_layers=0"])  # still validated
    with pytest.raises(ConfigError, match="unknown config key 'model_params.vae_layer'"):
        load_config("nmer", overrides=["model_params.vae_layer=1"])
    # ExperimentConfig(model=...) gets that model's section; a config stored by a version with one flat
    # section for every model loads, the other models' parameters left out.
    assert ExperimentConfig(model="nmer").model_params.kl_weight == 1.0
    flat = fusion.to_dict()
    flat["model_params"].update(vae_layers=2, cmd_k=3)
    assert config_from_dict(flat).hash() == fusion.hash()


def test_config_file_layers_over_recipe(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("model: utt_shared\ntrain:\n  seed: 11\n")
    cfg = load_config(None, f, ["train.lr=0.001"])
    assert cfg.model == "utt_shared" and cfg.train.seed == 11 and cfg.train.lr == 0.001


@pytest.mark.parametrize("text,needle", [
    ("train:\n  batchsize: 3\n", "unknown config key 'train.batchsize'"),
    ("train:\n  batch_size: three\n", "train.batch_size: expected an integer"),
    ("train:\n  batch_size: 0\n", "train.batch_size: 0 is below the minimum 1"),
    ("train:\n  select_on: test\n", "train.select_on: 'test' is not one of val, test_leak"),
    ("model_params:\n  cls_dropout: 1.5\n", "above the maximum"),
    ("train: [1, 2\n", "malformed YAML"),
    ("- 1\n- 2\n", "top level must be a mapping"),
    ("train: 3\n", "train: expected a mapping"),
])
def test_bad_config_files_name_key_and_file(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config("utt_fusion", f)
    assert needle in str(err.value)
    assert str(f) in str(err.value)


def test_bad_override_names_the_override() -> None:
    with pytest.raises(ConfigError, match=r"--set train.nope=1: unknown config key 'train.nope'"):
        load_config("utt_fusion", overrides=["train.nope=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config("utt_fusion", overrides=["train.seed"])


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config("utt_fusion", tmp_path / "absent.yaml")


def test_round_trip_and_hash_is_stable() -> None:
    cfg = load_config("utt_fusion", overrides=["train.seed=3"])
    again = config_from_dict(cfg.to_dict())
    assert again == cfg and again.hash() == cfg.hash()
    assert load_config("utt_fusion", overrides=["train.seed=4"]).hash() != cfg.hash()


def test_unknown_keys_rejected_unless_lenient(caplog: pytest.LogCaptureFixture) -> None:
    raw = load_config("utt_fusion").to_dict()
    raw["model_params"]["retired_option"] = 1
    with pytest.raises(ConfigError, match="unknown config key 'model_params.retired_option'"):
        config_from_dict(raw, source="ckpt.pt")
    with caplog.at_level("WARNING"):
        cfg = config_from_dict(raw, source="ckpt.pt", strict=False)
    assert cfg == load_config("utt_fusion")
    assert "ckpt.pt: ignoring config key(s) this version does not know: model_params.retired_option" in caplog.text


def test_checkpoint_from_an_older_version_still_loads(tmp_path: Path) -> None:
    from mer_lib.inference import checkpoint as ckpt_io
    from mer_lib.models.factory import build_model

    cfg = load_config("utt_fusion")
    raw = cfg.to_dict()
    raw["train"]["removed_since"] = True
    model = build_model(cfg)
    ckpt_io.save({"model": ckpt_io.model_state(model), "config": raw, "meta": {}}, tmp_path / BEST)
    loaded, loaded_cfg, _ = ckpt_io.load_trained(tmp_path)
    assert loaded_cfg == cfg
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(),
                                                strict=True))


def test_named_recipes_resolve_to_packaged_files() -> None:
    from mer_lib.config import recipe_file

    assert recipe_file("nmer", "faithful") is None
    assert recipe_file("nmer", "improved").name == "nmer_improved.yaml"
    assert recipe_file("ifmmin", "improved").name == "ifmmin_improved.yaml"
    assert load_config("nmer", recipe_file("nmer", "published")).recipe == "published"
    with pytest.raises(ConfigError, match="model 'nmer_pretrain' has no 'improved' recipe \\(packaged: faithful\\)"):
        recipe_file("nmer_pretrain", "improved")
    with pytest.raises(ConfigError, match=r"no .published. recipe \(packaged: faithful, improved\)"):
        recipe_file("ifmmin", "published")
    assert recipe_file("nmer_pretrain", "improved", required=False) is None
    with pytest.raises(ConfigError, match="recipe must be one of faithful, improved, published, got 'best'"):
        recipe_file("nmer", "best")


def test_recipe_is_an_argument_of_load_config() -> None:
    faithful, published = load_config("nmer"), load_config("nmer", recipe="published")
    assert (faithful.recipe, published.recipe) == ("faithful", "published")
    assert published.model_params.kl_reduction == "sum" and faithful.model_params.kl_reduction == "mean"
    # overrides still win over the recipe
    assert load_config("nmer", None, ["model_params.kl_reduction=mean"], recipe="published").model_params.kl_reduction \
        == "mean"
    with pytest.raises(ConfigError, match="has no 'published' recipe"):
        load_config("utt_fusion", recipe="published")
    assert load_config("utt_fusion", recipe="published", recipe_fallback=True).recipe == "faithful"
    with pytest.raises(ConfigError, match="recipe must be one of"):
        load_config("nmer", recipe="fancy")
