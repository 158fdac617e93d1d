"""Tests for metarl.config: YAML loading, overrides, validation errors, round trip, diffs."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from metarl.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    diff_configs,
    load_config,
    save_config,
    validate_config,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments" / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_defaults_are_valid():
    cfg = validate_config(TrainConfig())
    assert cfg.inner.lr == 0.1
    assert cfg.policy.hidden_sizes == [64, 64]
    assert cfg.eval.seed != cfg.seed


def test_expected_config_files_exist():
    names = {p.stem for p in CONFIGS}
    assert {"navigation2d", "half_cheetah_vel", "half_cheetah_dir", "ant_vel", "ant_dir"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_yaml_config_loads(path):
    # env.id is checked against the Gymnasium registry only once the `envs` package exists.
    cfg = load_config(path)
    assert cfg.env.id.startswith("metarl/")
    assert cfg.inner.lr == 0.1
    assert cfg.episodes_per_task == 20
    assert cfg.gamma == 0.99 and cfg.gae_lambda == 1.0 and cfg.trpo.max_kl == 0.01
    assert cfg.tasks_per_batch == (20 if path.stem == "navigation2d" else 40)
    assert path.read_text(encoding="utf-8").startswith("# ")


def test_overrides_nested_keys_and_lists(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  lr: 0.1\n", encoding="utf-8")
    cfg = load_config(
        path,
        [
            "inner.lr=0.5",
            "policy.hidden_sizes=[32,32]",
            "maml.estimator=dice",
            "env.kwargs.goal_low=-1",
            "inner.grad_clip=1",
            "hfmaml.delta_scale=1e-4",
            "outer.adam_betas=[0.5, 0.9]",
            "seed=7",
        ],
    )
    assert cfg.inner.lr == 0.5
    assert cfg.policy.hidden_sizes == [32, 32]
    assert cfg.maml.estimator == "dice"
    assert cfg.env.kwargs == {"goal_low": -1}
    assert cfg.inner.grad_clip == 1.0 and isinstance(cfg.inner.grad_clip, float)
    assert cfg.hfmaml.delta_scale == pytest.approx(1e-4)
    assert cfg.outer.adam_betas == [0.5, 0.9]
    assert cfg.seed == 7


def test_apply_overrides_does_not_mutate_input():
    d = {"inner": {"lr": 0.1}}
    out = apply_overrides(d, ["inner.lr=0.2", "inner.grad_clip=null"])
    assert out == {"inner": {"lr": 0.2, "grad_clip": None}}
    assert d == {"inner": {"lr": 0.1}}


def test_type_coercion():
    cfg = config_from_dict({"gamma": 1, "iterations": 10.0, "inner": {"lr": 0}})
    assert cfg.gamma == 1.0 and isinstance(cfg.gamma, float)
    assert cfg.iterations == 10 and isinstance(cfg.iterations, int)
    assert cfg.inner.lr == 0.0  # α = 0 is a valid ablation
    assert config_from_dict({"env": {"horizon": None}}).env.horizon is None


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"inner": {"lr": -0.1}}, ["'inner.lr'", "-0.1", "must be >= 0"]),
        ({"algorithm": "mamll"}, ["'algorithm'", "'mamll'", "maml, fomaml, hfmaml"]),
        ({"inner": {"lrr": 1}}, ["'inner.lrr'", "allowed: lr, steps, grad_clip"]),
        ({"tasks_per_batch": "ten"}, ["'tasks_per_batch'", "'ten'", "expected int"]),
        ({"iterations": True}, ["'iterations'", "True", "expected int"]),
        ({"iterations": 2.5}, ["'iterations'", "2.5", "expected int"]),
        ({"normalize_advantages": 1}, ["'normalize_advantages'", "1", "expected bool"]),
        ({"policy": {"hidden_sizes": [32, "a"]}}, ["'policy.hidden_sizes'", "'a'", "list of int"]),
        ({"policy": {"hidden_sizes": [32, 0]}}, ["'policy.hidden_sizes'", "[32, 0]", ">= 1"]),
        ({"inner": {"grad_clip": "x"}}, ["'inner.grad_clip'", "'x'", "float or null"]),
        ({"inner": {"grad_clip": 0}}, ["'inner.grad_clip'", "0", "> 0"]),
        ({"inner": 5}, ["'inner'", "5", "expected mapping"]),
        ({"gamma": 0}, ["'gamma'", "0", "(0, 1]"]),
        ({"trpo": {"ls_backtrack": 1.0}}, ["'trpo.ls_backtrack'", "1.0", "(0, 1)"]),
        ({"trpo": {"fvp_tasks": 0}}, ["'trpo.fvp_tasks'", "0", "(0, 1]"]),
        ({"trpo": {"fvp_tasks": 1.5}}, ["'trpo.fvp_tasks'", "1.5", "(0, 1]"]),
        ({"outer": {"lr": 0}}, ["'outer.lr'", "0", "> 0"]),
        ({"outer": {"adam_betas": [0.9]}}, ["'outer.adam_betas'", "[0.9]"]),
        ({"policy": {"activation": "gelu"}}, ["'policy.activation'", "'gelu'", "tanh, relu"]),
        ({"maml": {"estimator": "x"}}, ["'maml.estimator'", "'x'", "standard, dice"]),
        ({"device": "gpu"}, ["'device'", "'gpu'"]),
        ({"env": {"id": ""}}, ["'env.id'", "''"]),
        ({"seed": 5, "eval": {"seed": 5}}, ["'eval.seed'", "5", "must differ from 'seed'"]),
    ],
)
def test_validation_errors_name_key_and_value(data, fragments):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_unknown_env_id_lists_registered_ids(monkeypatch):
    # Pretend the `envs` package exists, so the registry check runs whatever its state.
    fake = types.ModuleType("envs")
    fake.__file__ = "envs/__init__.py"
    monkeypatch.setitem(sys.modules, "envs", fake)
    with pytest.raises(ConfigError, match=r"'env\.id' = 'metarl/Nope-v0': .*registered"):
        config_from_dict({"env": {"id": "metarl/Nope-v0"}})
    assert config_from_dict({"env": {"id": "CartPole-v1"}}).env.id == "CartPole-v1"


def test_missing_and_invalid_files(tmp_path):
    missing = tmp_path / "x.yaml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_config(missing)
    assert str(missing) in str(info.value)

    bad = tmp_path / "bad.yaml"
    bad.write_text("inner: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_config(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)

    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listing)

    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n", encoding="utf-8")
    assert load_config(empty) == config_from_dict({})


@pytest.mark.parametrize("override", ["foo", "=3", "inner..lr=1"])
def test_malformed_override(override):
    with pytest.raises(ConfigError, match="must look like key=value") as info:
        apply_overrides({}, [override])
    assert repr(override) in str(info.value)


def test_override_errors_name_key_and_value():
    with pytest.raises(ConfigError, match=r"'inner\.lr' = -0\.1: must be >= 0"):
        config_from_dict(apply_overrides({}, ["inner.lr=-0.1"]))
    with pytest.raises(ConfigError, match=r"unknown config key 'inner\.lrr'"):
        config_from_dict(apply_overrides({}, ["inner.lrr=1"]))
    with pytest.raises(ConfigError, match=r"'inner\.lr' = 0\.1: is not a mapping"):
        apply_overrides({"inner": {"lr": 0.1}}, ["inner.lr.x=1"])
    with pytest.raises(ConfigError, match="invalid YAML value"):
        apply_overrides({}, ["policy.hidden_sizes=[1,"])


def test_round_trip_save_load(tmp_path):
    cfg = config_from_dict(
        apply_overrides(
            {},
            [
                "algorithm=hfmaml",
                "hfmaml.delta=1e-5",
                "hfmaml.hessian_episodes=5",
                "env.kwargs={goal_low: -0.5, goal_high: 0.5}",
                "env.horizon=100",
                "policy.hidden_sizes=[100,100]",
            ],
        )
    )
    path = tmp_path / "run" / "config.yaml"
    path.parent.mkdir()
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left
    save_config(cfg, path)  # overwriting is fine
    assert load_config(path) == cfg


def test_diff_configs_names_differing_keys():
    a = config_from_dict({})
    b = config_from_dict(
        apply_overrides({}, ["inner.lr=0.2", "policy.hidden_sizes=[32]", "env.kwargs.x=1"])
    )
    assert diff_configs(a, a) == []
    assert diff_configs(a, b) == ["policy.hidden_sizes", "inner.lr", "env.kwargs.x"]
    assert diff_configs(config_to_dict(a), b, ignore=["policy", "env.kwargs"]) == ["inner.lr"]


def test_a_saved_config_without_a_newer_key_keeps_the_behaviour_it_ran_with(tmp_path):
    """Run configs written before ``averaging`` existed ran per step; reading them as saved
    must not switch them to today's per-episode default (a resume would change algorithm)."""
    from metarl.config import LEGACY_DEFAULTS, config_from_dict, load_config

    path = tmp_path / "config.yaml"
    path.write_text("algorithm: maml\ninner:\n  lr: 0.1\n")
    assert load_config(path).averaging == "per_episode"
    assert load_config(path, saved=True).averaging == LEGACY_DEFAULTS["averaging"] == "per_step"
    assert config_from_dict({"averaging": "per_episode"}, saved=True).averaging == "per_episode"


def test_train_cli_takes_config_after_set_overrides():
    """`metarl train --run-dir D --set iterations=1 CONFIG`: --set (greedy) does not eat CONFIG."""
    from metarl.cli import build_parser
    from metarl.cli_common import split_config_from_overrides

    args = build_parser().parse_args(
        ["train", "--run-dir", "d", "--set", "iterations=1", "seed=2", "cfg.yaml"]
    )
    split_config_from_overrides(args)
    assert args.config == "cfg.yaml" and args.overrides == ["iterations=1", "seed=2"]
    args = build_parser().parse_args(["train", "x.yaml", "--run-dir", "d", "--set", "seed=2"])
    split_config_from_overrides(args)
    assert args.config == "x.yaml" and args.overrides == ["seed=2"]
