"""Paper-faithful settings: the paper-timing HalfCheetahVel (Finn et al. 2017) and the oracle
observation wrappers (task parameters appended to the observation)."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from mujoco import rollout as mj_rollout

import envs
from envs.locomotion import HalfCheetahVelEnv, model_with_torso_sensors, torso_sensor_slices
from envs.oracle import BatchedTaskInObservation, TaskInObservation

CHEETAH = "metarl/HalfCheetahVel-v0"
NAV = "metarl/Navigation2D-v0"
PAPER = {
    "frame_skip": 1,
    "velocity_source": "torso_com",
    "include_torso_com_in_observation": True,
}
EXACT = {"rtol": 0.0, "atol": 0.0}

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*infinity.*:UserWarning",
    "ignore:.*Box observation space.*:UserWarning",
    "ignore:.*is different from the unwrapped version.*:UserWarning",
)


def _torso_com_velocity(model: mujoco.MjModel, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """Mass-weighted mean of the bodies' COM velocities below the torso, as rllab computes it
    (``mj_objectVelocity`` per body), on a fresh MjData: independent of the env's sensors."""
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = qpos, qvel
    mujoco.mj_forward(model, data)
    torso = model.body("torso").id
    momentum, mass = np.zeros(3), 0.0
    for body in range(model.nbody):
        ancestor = body
        while ancestor not in (0, torso):
            ancestor = model.body_parentid[ancestor]
        if ancestor != torso:
            continue
        velocity = np.zeros(6)
        mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_BODY, body, velocity, 0)
        momentum += model.body_mass[body] * velocity[3:]
        mass += model.body_mass[body]
    return momentum / mass


def _lockstep(
    env_id: str, horizon: int, steps: int, oracle: bool = False, **kwargs: Any
) -> tuple[int, int]:
    """B batched copies and B single envs with the same seeds and actions must agree exactly.

    Returns ``(episode ends, observation size)``.
    """
    b, seed = 3, 4
    batched = envs.make_batched(env_id, num_envs=b, horizon=horizon, oracle=oracle, **kwargs)
    singles = [envs.make_single(env_id, horizon=horizon, oracle=oracle, **kwargs) for _ in range(b)]
    try:
        tasks = batched.sample_tasks(b, np.random.default_rng(seed))
        batched.set_tasks(tasks)
        obs, _ = batched.reset(seed=seed)
        first = [
            e.reset(seed=seed + i, options={"task": tasks[i]})[0] for i, e in enumerate(singles)
        ]
        np.testing.assert_allclose(obs, np.asarray(first, dtype=np.float32), **EXACT)
        high = singles[0].action_space.high.astype(np.float64)
        actions = np.random.default_rng(seed).uniform(
            -1.2 * high, 1.2 * high, (steps, b, high.size)
        )
        ends = 0
        for t, action in enumerate(actions):
            obs, reward, terminated, truncated, info = batched.step(action)
            for i, env in enumerate(singles):
                o, r, term, trunc, single_info = env.step(action[i])
                np.testing.assert_allclose(info["final_obs"][i], np.float32(o), **EXACT)
                assert reward[i] == r, (t, i)
                assert terminated[i] == term and truncated[i] == (trunc and not term), (t, i)
                for key, value in info.items():
                    if key.startswith(("reward_", "x_velocity")):
                        assert value[i] == single_info[key], (t, i, key)
                if term or trunc:
                    ends += 1
                    o, _ = env.reset()
                np.testing.assert_allclose(obs[i], np.float32(o), **EXACT)
        return ends, obs.shape[1]
    finally:
        batched.close()
        for env in singles:
            env.close()


# -- paper-timing HalfCheetahVel ----------------------------------------------------------------


def test_paper_timing_dt_and_observation_dim() -> None:
    env = envs.make_single(CHEETAH, **PAPER)
    raw = env.unwrapped
    assert raw.dt == pytest.approx(0.01) and raw.frame_skip == 1 and raw.params.dt == raw.dt
    assert env.observation_space.shape == (20,)
    assert env.spec is not None and env.spec.max_episode_steps == 200  # 200 x 0.01 s = 2 s
    obs, _ = env.reset(seed=0)
    torso = raw.model.body("torso").id
    expected = np.concatenate([raw.data.qpos[1:], raw.data.qvel, raw.data.subtree_com[torso]])
    np.testing.assert_array_equal(obs, expected)
    batched = envs.make_batched(CHEETAH, num_envs=2, **PAPER)
    assert batched.obs_dim == 20 and batched.dt == pytest.approx(0.01) and batched.horizon == 200
    batched.close()
    # the defaults are untouched: Gymnasium's timing and observation
    default = envs.make_single(CHEETAH).unwrapped
    assert default.dt == pytest.approx(0.05) and default.observation_space.shape == (17,)
    assert default.model.nsensordata == 0 and default.params.velocity_source == "qpos"


def test_paper_reward_matches_hand_computation() -> None:
    task = {"velocity": 1.3}
    env = envs.make_single(CHEETAH, **PAPER).unwrapped
    env.reset(seed=0, options={"task": task})
    env.set_state(
        env.init_qpos + 0.01 * np.arange(env.model.nq),
        env.init_qvel + 0.5 * np.cos(np.arange(env.model.nv)),
    )
    action = np.linspace(-0.9, 0.7, env.model.nu)
    x_before = float(env.data.qpos[0])
    obs, reward, terminated, truncated, info = env.step(action)
    # torso COM velocity of the state *after* the step, computed without the env's sensors
    velocity = _torso_com_velocity(env.model, env.data.qpos, env.data.qvel)
    expected = -abs(velocity[0] - task["velocity"]) - 0.05 * float(np.sum(action**2))
    assert reward == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert info["x_velocity"] == pytest.approx(velocity[0], rel=1e-12, abs=1e-12)
    assert info["reward_ctrl"] == pytest.approx(-0.05 * float(np.sum(action**2)), rel=1e-12)
    assert not terminated and not truncated
    torso = env.model.body("torso").id
    np.testing.assert_array_equal(obs[:17], np.concatenate([env.data.qpos[1:], env.data.qvel]))
    np.testing.assert_allclose(obs[17:], env.data.subtree_com[torso], rtol=0, atol=1e-15)
    # ... which is not the qpos[0] finite difference of the default variant
    assert abs(info["x_velocity"] - (env.data.qpos[0] - x_before) / 0.01) > 1e-3


def test_paper_reward_parts_sum_to_reward() -> None:
    env = envs.make_single(CHEETAH, **PAPER)
    env.reset(seed=1)
    batched = envs.make_batched(CHEETAH, num_envs=3, **PAPER)
    batched.set_tasks(batched.sample_tasks(3, np.random.default_rng(1)))
    batched.reset(seed=1)
    for action in np.random.default_rng(2).uniform(-1.0, 1.0, (10, 3, 6)):
        _, reward, _, _, info = env.step(action[0])
        assert info["reward_forward"] + info["reward_ctrl"] == pytest.approx(reward, abs=1e-12)
        assert info["reward_ctrl"] <= 0.0
        _, rewards, _, _, binfo = batched.step(action)
        np.testing.assert_allclose(
            binfo["reward_forward"] + binfo["reward_ctrl"], rewards, rtol=1e-12, atol=1e-12
        )
    batched.close()
    env.close()


def test_paper_batched_bit_identical_to_single_across_auto_reset() -> None:
    ends, obs_dim = _lockstep(CHEETAH, horizon=12, steps=30, **PAPER)
    assert ends >= 3 * 2 and obs_dim == 20


@pytest.mark.parametrize(
    "kwargs",
    [
        {"frame_skip": 1, "velocity_source": "torso_com"},  # sensors read, not observed
        {"frame_skip": 2, "include_torso_com_in_observation": True},  # observed, qpos velocity
    ],
)
def test_partial_paper_options_batched_matches_single(kwargs: dict[str, Any]) -> None:
    ends, obs_dim = _lockstep(CHEETAH, horizon=8, steps=10, **kwargs)
    assert ends >= 3 and obs_dim == (20 if "include_torso_com_in_observation" in kwargs else 17)


def test_paper_check_env_passes() -> None:
    env = envs.make_single(CHEETAH, **PAPER)
    env.reset(seed=0, options={"task": {"velocity": 0.4}})
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_paper_sensors_do_not_change_dynamics() -> None:
    # same frame_skip, with and without the added sensors (and the post-step mj_forward)
    plain = HalfCheetahVelEnv(frame_skip=1)
    paper = HalfCheetahVelEnv(**PAPER)
    plain.reset(seed=3)
    paper.reset(seed=3)
    for action in np.random.default_rng(0).uniform(-1.0, 1.0, (50, 6)):
        plain.step(action)
        paper.step(action)
    np.testing.assert_array_equal(plain.data.qpos, paper.data.qpos)
    np.testing.assert_array_equal(plain.data.qvel, paper.data.qvel)
    # the compiled model differs from the XML loader's only in the sensors
    reference = mujoco.MjModel.from_xml_path(plain.fullpath)
    np.testing.assert_array_equal(paper.model.body_mass, reference.body_mass)
    np.testing.assert_array_equal(paper.model.body_inertia, reference.body_inertia)
    np.testing.assert_array_equal(paper.model.dof_damping, reference.dof_damping)


def test_rollout_sensordata_is_evaluated_before_each_step() -> None:
    # the batched form relies on this: rollout's sensordata[k] belongs to the state before step k
    model = model_with_torso_sensors(HalfCheetahVelEnv().fullpath)
    data = mujoco.MjData(model)
    data.qvel[:] = np.sin(np.arange(model.nv))
    mujoco.mj_forward(model, data)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    start = np.zeros(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, start, spec)
    control = np.random.default_rng(0).uniform(-1.0, 1.0, (1, 3, model.nu))
    states, sensors = mj_rollout.rollout(model, mujoco.MjData(model), start[None], control)
    np.testing.assert_array_equal(sensors[0, 0], data.sensordata)
    mujoco.mj_setState(model, data, states[0, 0], spec)
    mujoco.mj_forward(model, data)
    np.testing.assert_array_equal(sensors[0, 1], data.sensordata)
    com, velocity = torso_sensor_slices(model)
    torso = model.body("torso").id
    np.testing.assert_array_equal(data.sensordata[com], data.subtree_com[torso])
    np.testing.assert_allclose(
        data.sensordata[velocity],
        _torso_com_velocity(model, data.qpos, data.qvel),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frame_skip": 0}, "frame_skip"),
        ({"frame_skip": 1.5}, "frame_skip"),
        ({"velocity_source": "com"}, "velocity_source"),
        ({"include_torso_com_in_observation": "yes"}, "include_torso_com"),
    ],
)
def test_paper_options_are_validated(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HalfCheetahVelEnv(**kwargs)


def test_paper_pickle_keeps_options() -> None:
    env = HalfCheetahVelEnv(task={"velocity": 0.3}, **PAPER)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.frame_skip == 1 and clone.params == env.params
    assert clone.observation_space.shape == (20,) and clone.get_task() == {"velocity": 0.3}


# -- oracle observations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "kwargs", "base_dim", "param_dim"),
    [(NAV, {}, 2, 2), (CHEETAH, {}, 17, 1), (CHEETAH, PAPER, 20, 1)],
)
def test_oracle_observation_is_base_plus_task(
    env_id: str, kwargs: dict[str, Any], base_dim: int, param_dim: int
) -> None:
    base = envs.make_single(env_id, **kwargs)
    oracle = envs.make_single(env_id, oracle=True, **kwargs)
    assert isinstance(oracle, TaskInObservation)
    assert oracle.observation_space.shape == (base_dim + param_dim,)
    assert oracle.observation_space.dtype == base.observation_space.dtype
    first, second = base.unwrapped.sample_tasks(2, np.random.default_rng(0))
    distribution = base.unwrapped.task_distribution
    obs, _ = base.reset(seed=0, options={"task": first})
    wrapped, _ = oracle.reset(seed=0, options={"task": first})
    dtype = base.observation_space.dtype
    params = distribution.to_array([first])[0].astype(dtype)
    np.testing.assert_array_equal(wrapped, np.concatenate([obs, params]))
    action = np.full(base.action_space.shape, 0.05)
    obs, *_ = base.step(action)
    wrapped, *_ = oracle.step(action)
    np.testing.assert_array_equal(wrapped, np.concatenate([obs, params]))
    # a new task shows at once
    wrapped, _ = oracle.reset(options={"task": second})
    np.testing.assert_array_equal(
        wrapped[base_dim:], distribution.to_array([second])[0].astype(dtype)
    )
    batched = envs.make_batched(env_id, num_envs=2, oracle=True, **kwargs)
    plain = envs.make_batched(env_id, num_envs=2, **kwargs)
    assert isinstance(batched, BatchedTaskInObservation)
    assert batched.obs_dim == plain.obs_dim + param_dim == base_dim + param_dim
    assert batched.param_dim == param_dim and batched.act_dim == plain.act_dim
    batched.close()
    plain.close()


@pytest.mark.parametrize(("env_id", "kwargs"), [(NAV, {}), (CHEETAH, {}), (CHEETAH, PAPER)])
def test_oracle_check_env_passes(env_id: str, kwargs: dict[str, Any]) -> None:
    env = TaskInObservation(gym.make(env_id, **kwargs).unwrapped)
    task = env.unwrapped.sample_tasks(1, np.random.default_rng(0))[0]
    env.reset(seed=0, options={"task": task})
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize(("env_id", "kwargs"), [(NAV, {}), (CHEETAH, PAPER)])
def test_oracle_batched_matches_single(env_id: str, kwargs: dict[str, Any]) -> None:
    ends, obs_dim = _lockstep(env_id, horizon=10, steps=25, oracle=True, **kwargs)
    assert ends >= 3 * 2
    assert obs_dim == (2 + 2 if env_id == NAV else 20 + 1)


def test_oracle_batched_appends_each_copys_task() -> None:
    batched = envs.make_batched(NAV, num_envs=3, horizon=2, oracle=True)
    tasks = [{"goal": [0.1, -0.2]}, {"goal": [-0.3, 0.4]}, {"goal": [0.5, 0.0]}]
    batched.set_tasks(tasks)
    obs, _ = batched.reset(seed=0)
    goals = np.float32([t["goal"] for t in tasks])
    np.testing.assert_array_equal(obs[:, 2:], goals)
    for _ in range(2):  # the second step ends every episode: auto-reset and final_obs
        obs, _, _, truncated, info = batched.step(np.zeros((3, 2)))
        np.testing.assert_array_equal(obs[:, 2:], goals)
        np.testing.assert_array_equal(info["final_obs"][:, 2:], goals)
    assert truncated.all()
    np.testing.assert_array_equal(obs[:, :2], 0.0)
    assert batched.rngs is batched.env.rngs and batched.tasks == tasks
    batched.close()
