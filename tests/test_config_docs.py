"""`metarl config` and docs/config.md, both generated from metarl/config.py."""

from __future__ import annotations

import yaml

from metarl import config as config_module
from metarl import config_docs
from metarl.cli import main
from metarl.config import TrainConfig, config_from_dict, load_config, save_config

NAV = config_docs.ROOT / "experiments/configs/navigation2d.yaml"


def test_docs_config_md_is_up_to_date():
    committed = config_docs.DOC_PATH.read_text(encoding="utf-8")
    assert committed == config_docs.markdown(), (
        "docs/config.md is stale: regenerate it with `python -m metarl.config_docs --write`"
    )


def test_every_config_key_has_a_meaning_and_no_entry_is_stale():
    keys = config_docs.config_keys()
    assert len(keys) == len(set(keys))
    assert set(config_docs.KEY_DOCS) == set(keys)
    assert all(config_docs.KEY_DOCS[k].strip() for k in keys)
    assert set(config_docs.CROSS_KEY_RULES) <= set(keys)


def test_every_validation_rule_is_documented_as_allowed_values():
    documented = {k.key: k for s in config_docs.sections() for k in s.keys}
    assert set(config_module._RULES) <= set(documented)
    for key in config_module._RULES:
        assert documented[key].allowed, key
    assert documented["algorithm"].allowed == "one of maml, fomaml, hfmaml, pretrained, oracle"
    assert documented["gamma"].allowed == "in (0, 1]"
    assert documented["inner.lr"].allowed == ">= 0"
    assert documented["policy.hidden_sizes"].allowed == "each element >= 1"
    assert "metarl/HalfCheetahVel-v0" in documented["env.id"].allowed


def test_defaults_match_the_dataclasses():
    flat = config_module.flat_config(TrainConfig())
    documented = {k.key: k.default for s in config_docs.sections() for k in s.keys}
    assert documented.pop("env.kwargs") == {}  # empty mappings have no flat key
    assert documented == flat


def _printed(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["config", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_config_prints_the_resolved_config_as_loadable_yaml(capsys):
    code, out, _ = _printed(capsys, str(NAV), "--set", "inner.lr=0.5", "policy.hidden_sizes=[32]")
    assert code == 0
    expected = load_config(NAV, ["inner.lr=0.5", "policy.hidden_sizes=[32]"])
    assert config_from_dict(yaml.safe_load(out)) == expected
    line = next(x for x in out.splitlines() if x.strip().startswith("lr: 0.5"))
    assert "inner (adaptation) step size" in line and "[>= 0]" in line
    assert "(default 0.1)" in line
    assert all(k.rsplit(".", 1)[-1] + ":" in out for k in config_docs.config_keys())


def test_config_without_file_prints_the_defaults(capsys):
    code, out, _ = _printed(capsys)
    assert code == 0
    assert config_from_dict(yaml.safe_load(out)) == TrainConfig()
    assert "(default " not in out


def test_config_of_a_run_directory_reads_its_config_yaml(capsys, tmp_path):
    save_config(load_config(NAV, ["algorithm=hfmaml"]), tmp_path / "config.yaml")
    code, out, _ = _printed(capsys, str(tmp_path))
    assert code == 0
    assert yaml.safe_load(out)["algorithm"] == "hfmaml"


def test_config_rejects_a_bad_value_in_one_line(capsys):
    code, out, err = _printed(capsys, "--set", "inner.lr=-1")
    assert code == 2 and out == ""
    assert err.strip() == "error: config key 'inner.lr' = -1.0: must be >= 0"
