"""The locomotion envs compile Gymnasium's XML without the deprecated ``settotalmass``.

The model must stay the one ``MjModel.from_xml_path`` gives (what Gymnasium and earlier versions
of these envs use), array for array and in its statistics, so the dynamics are bit-identical.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest

from envs.locomotion import (
    TORSO_BODY,
    AntVelEnv,
    HalfCheetahVelEnv,
    compile_model,
)

ROOT = Path(__file__).resolve().parents[1]
STAT_FIELDS = ("meanmass", "meaninertia", "meansize", "extent", "center")


def _arrays(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    return {
        name: value
        for name in dir(model)
        if not name.startswith("_") and isinstance(value := getattr(model, name), np.ndarray)
    }


def _assert_same_model(model: mujoco.MjModel, reference: mujoco.MjModel) -> None:
    arrays, expected = _arrays(model), _arrays(reference)
    assert arrays.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(arrays[name], value, err_msg=name)
    for field in STAT_FIELDS:
        np.testing.assert_array_equal(
            getattr(model.stat, field), getattr(reference.stat, field), err_msg=field
        )
    assert str(model.opt) == str(reference.opt)


@pytest.mark.parametrize("env_class", [HalfCheetahVelEnv, AntVelEnv])
def test_compiled_model_equals_the_xml_loaders(env_class) -> None:
    path = env_class().fullpath
    _assert_same_model(compile_model(path), mujoco.MjModel.from_xml_path(path))


def test_half_cheetah_xml_uses_settotalmass_and_its_effect_is_kept() -> None:
    path = HalfCheetahVelEnv().fullpath
    assert mujoco.MjSpec.from_file(path).compiler.settotalmass > 0  # the case this is about
    model = compile_model(path)
    assert float(model.body_mass.sum()) == pytest.approx(14.0, abs=1e-12)
    assert model.stat.meanmass == pytest.approx(14.0 / (model.nbody - 1), abs=1e-12)


def test_sensors_change_only_the_sensor_arrays() -> None:
    path = HalfCheetahVelEnv().fullpath
    model, reference = compile_model(path, TORSO_BODY), mujoco.MjModel.from_xml_path(path)
    assert model.nsensor == reference.nsensor + 2
    for name, value in _arrays(reference).items():
        if not name.startswith(("sensor_", "name_sensoradr", "names", "name_")):
            np.testing.assert_array_equal(_arrays(model)[name], value, err_msg=name)
    for field in STAT_FIELDS:
        np.testing.assert_array_equal(getattr(model.stat, field), getattr(reference.stat, field))


def test_trajectory_bit_identical_to_the_xml_loaders_model() -> None:
    path = HalfCheetahVelEnv().fullpath
    states = []
    for model in (compile_model(path), mujoco.MjModel.from_xml_path(path)):
        data = mujoco.MjData(model)
        data.qvel[:] = np.sin(np.arange(model.nv))
        for ctrl in np.random.default_rng(0).uniform(-1.0, 1.0, (200, model.nu)):
            data.ctrl[:] = ctrl
            data.qacc_warmstart[:] = 0.0
            mujoco.mj_step(model, data, nstep=5)
        states.append(np.concatenate((data.qpos, data.qvel)))
    np.testing.assert_array_equal(states[0], states[1])


def test_making_the_envs_prints_no_mujoco_deprecation_warning(tmp_path) -> None:
    code = (
        "import gymnasium as gym, envs\n"
        "for env_id in ('metarl/HalfCheetahVel-v0', 'metarl/HalfCheetahDir-v0',"
        " 'metarl/AntVel-v0', 'metarl/AntDir-v0'):\n"
        "    gym.make(env_id).reset(seed=0)\n"
        "envs.make_batched('metarl/HalfCheetahVel-v0', num_envs=2)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "always"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "settotalmass" not in proc.stdout + proc.stderr
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
