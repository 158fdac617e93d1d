"""Tests for the task environments: Gymnasium API, batched == single, task API, rewards."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.navigation import BatchedNavigation2D

ALL_IDS = list(envs.ENV_IDS)
MUJOCO_IDS = [i for i in ALL_IDS if i != "metarl/Navigation2D-v0"]
EXPECTED_IDS = {
    "metarl/Navigation2D-v0",
    "metarl/HalfCheetahVel-v0",
    "metarl/HalfCheetahDir-v0",
    "metarl/AntVel-v0",
    "metarl/AntDir-v0",
}
TOL = {"rtol": 1e-10, "atol": 1e-10}

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*infinity.*:UserWarning", "ignore:.*Box observation space.*:UserWarning"
)


def _make(env_id: str, horizon: int | None = None, **kwargs: Any) -> gym.Env:
    return envs.make_single(env_id, horizon=horizon, **kwargs)


def _field(env: gym.Env) -> envs.TaskField:
    return env.unwrapped.task_distribution.fields[0]


def _random_actions(env: gym.Env, rng: np.random.Generator, n: int, steps: int) -> np.ndarray:
    """Actions up to 1.2x the bounds, so that clipping/clamping is exercised too."""
    high = env.action_space.high.astype(np.float64)
    return rng.uniform(-1.2 * high, 1.2 * high, size=(steps, n, high.size))


def _run_lockstep(
    env_id: str,
    tasks: list[dict[str, Any]] | None,
    actions: Callable[[int], np.ndarray],
    horizon: int,
    steps: int,
    seed: int = 7,
    tol: dict[str, float] = TOL,
    **kwargs: Any,
) -> int:
    """Step B batched copies and B single envs with the same actions; assert equal outputs.

    Returns the number of episode ends seen (so callers can assert an auto-reset happened).
    """
    b = 4
    batched = envs.make_batched(env_id, num_envs=b, horizon=horizon, **kwargs)
    singles = [_make(env_id, horizon=horizon, **kwargs) for _ in range(b)]
    try:
        if tasks is None:
            tasks = batched.sample_tasks(b, np.random.default_rng(seed))
        batched.set_tasks(tasks)
        obs, _ = batched.reset(seed=seed)
        single_obs = [
            env.reset(seed=seed + i, options={"task": tasks[i]})[0] for i, env in enumerate(singles)
        ]
        np.testing.assert_allclose(obs, np.asarray(single_obs, dtype=np.float32), **tol)
        episode_ends = 0
        for t in range(steps):
            action = actions(t)
            obs, reward, terminated, truncated, info = batched.step(action)
            for i, env in enumerate(singles):
                o, r, term, trunc, _ = env.step(action[i])
                np.testing.assert_allclose(info["final_obs"][i], np.float32(o), **tol)
                np.testing.assert_allclose(reward[i], r, **tol)
                assert terminated[i] == term, (t, i)
                # TimeLimit reports truncated also on a terminal step; the batched form does not
                assert truncated[i] == (trunc and not term), (t, i)
                if term or trunc:
                    episode_ends += 1
                    o, _ = env.reset()
                np.testing.assert_allclose(obs[i], np.float32(o), **tol)
        return episode_ends
    finally:
        batched.close()
        for env in singles:
            env.close()


def test_all_ids_registered() -> None:
    assert set(envs.ENV_IDS) == EXPECTED_IDS
    for env_id in EXPECTED_IDS:
        assert env_id in gym.envs.registry


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_check_env_passes(env_id: str) -> None:
    env = _make(env_id)
    task = env.unwrapped.sample_tasks(1, np.random.default_rng(0))[0]
    env.reset(seed=0, options={"task": task})
    # the "human" render mode needs a display; rendering is checked separately below
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_batched_matches_single_with_auto_reset(env_id: str) -> None:
    rng = np.random.default_rng(3)
    probe = _make(env_id)
    actions = _random_actions(probe, rng, 4, 38)
    probe.close()
    horizon = 15
    ends = _run_lockstep(env_id, None, lambda t: actions[t], horizon, len(actions))
    assert ends >= 4  # every copy was auto-reset at least once


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_batched_bit_identical_to_single_over_full_episode(env_id: str) -> None:
    # the cold-started solver makes the two forms agree exactly, not just to a tolerance
    rng = np.random.default_rng(11)
    actions = rng.uniform(-1.0, 1.0, size=(200, 4, 8 if "Ant" in env_id else 6))
    exact = {"rtol": 0.0, "atol": 0.0}
    kwargs = {"terminate_when_unhealthy": False} if "Ant" in env_id else {}
    _run_lockstep(env_id, None, lambda t: actions[t], 200, 200, tol=exact, **kwargs)


def test_batched_matches_single_on_early_termination_navigation() -> None:
    tasks = [{"goal": [0.05, 0.0]}] * 4
    action = np.tile([0.05, 0.0], (4, 1))
    ends = _run_lockstep("metarl/Navigation2D-v0", tasks, lambda t: action, 15, 5)
    assert ends == 4 * 5  # terminates on every step


@pytest.mark.parametrize("env_id", ["metarl/AntVel-v0", "metarl/AntDir-v0"])
def test_batched_matches_single_on_early_termination_ant(env_id: str) -> None:
    # the torso starts at z = 0.75 and sinks onto its legs, leaving this narrow healthy range
    rng = np.random.default_rng(5)
    actions = rng.uniform(-1.0, 1.0, size=(30, 4, 8))
    ends = _run_lockstep(
        env_id, None, lambda t: actions[t], 200, len(actions), healthy_z_range=(0.6, 1.0)
    )
    assert ends >= 4


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_sample_tasks_reproducible_and_in_range(env_id: str) -> None:
    env = _make(env_id).unwrapped
    a = env.sample_tasks(20, np.random.default_rng(1))
    b = env.sample_tasks(20, np.random.default_rng(1))
    c = env.sample_tasks(20, np.random.default_rng(2))
    assert a == b
    assert a != c
    field = _field(env)
    values = np.array([t[field.name] for t in a])
    if field.choices is not None:
        assert set(values.ravel()) <= set(field.choices)
    else:
        assert np.all(values >= field.low) and np.all(values <= field.high)


def _malformed(env: gym.Env, case: str) -> dict[str, Any]:
    field = _field(env)
    task = env.unwrapped.get_task()
    if case == "missing":
        return {}
    if case == "extra":
        return {**task, "extra_key": 1.0}
    if case == "string":
        return {field.name: "fast"}
    if case == "out_of_range":
        bad = 0.5 if field.choices is not None else field.high + 1.0
        return {field.name: np.full(field.shape, bad).tolist()}
    return {field.name: np.full(field.shape, np.nan).tolist()}


@pytest.mark.parametrize("case", ["missing", "extra", "string", "out_of_range", "nan"])
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_malformed_task_raises_value_error(env_id: str, case: str) -> None:
    env = _make(env_id)
    bad = _malformed(env, case)
    key = "extra_key" if case == "extra" else _field(env).name
    with pytest.raises(ValueError, match=key):
        env.unwrapped.set_task(bad)
    with pytest.raises(ValueError, match=key):
        env.reset(options={"task": bad})
    batched = envs.make_batched(env_id, num_envs=2)
    with pytest.raises(ValueError, match=key):
        batched.set_tasks([env.unwrapped.get_task(), bad])
    batched.close()
    env.close()


@pytest.mark.parametrize("case", ["shape", "nan"])
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_bad_action_raises_value_error(env_id: str, case: str) -> None:
    env = _make(env_id)
    env.reset(seed=0)
    n = env.action_space.shape[0]
    batched = envs.make_batched(env_id, num_envs=2)
    batched.set_tasks(batched.sample_tasks(2, np.random.default_rng(0)))
    batched.reset(seed=0)
    if case == "shape":
        single_bad, batched_bad, match = np.zeros(n + 1), np.zeros((2, n + 1)), "shape"
    else:
        single_bad = np.zeros(n)
        single_bad[0] = np.nan
        batched_bad = np.zeros((2, n))
        batched_bad[1, 0] = np.nan
        match = "not finite"
    with pytest.raises(ValueError, match=match):
        env.unwrapped.step(single_bad)
    with pytest.raises(ValueError, match=match):
        batched.step(batched_bad)
    batched.close()
    env.close()


@pytest.mark.parametrize(
    ("env_id", "task", "ctrl_weight", "survive"),
    [
        ("metarl/HalfCheetahVel-v0", {"velocity": 1.3}, 0.05, None),
        ("metarl/HalfCheetahDir-v0", {"direction": -1.0}, 0.05, None),
        ("metarl/AntVel-v0", {"velocity": 2.1}, 0.5, 1.0),
        ("metarl/AntDir-v0", {"direction": 1.0}, 0.5, 1.0),
    ],
)
def test_reward_matches_hand_computation(
    env_id: str, task: dict[str, float], ctrl_weight: float, survive: float | None
) -> None:
    env = _make(env_id).unwrapped
    env.reset(seed=0, options={"task": task})
    qpos = env.init_qpos + 0.01 * np.arange(env.model.nq)
    qvel = env.init_qvel + 0.2 * np.cos(np.arange(env.model.nv))
    env.set_state(qpos, qvel)
    action = np.linspace(-0.9, 0.7, env.model.nu)
    x_before = env.data.qpos[0]
    obs, reward, terminated, _, info = env.step(action)
    v_x = (env.data.qpos[0] - x_before) / 0.05
    forward = -abs(v_x - task["velocity"]) if "velocity" in task else task["direction"] * v_x
    expected = forward - ctrl_weight * float(np.sum(action**2))
    if survive is not None:
        assert 0.2 <= env.data.qpos[2] <= 1.0 and not terminated
        expected += survive
    assert reward == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert info["x_velocity"] == pytest.approx(v_x, rel=1e-12, abs=1e-12)
    skipped = 1 if "HalfCheetah" in env_id else 2
    np.testing.assert_array_equal(obs, np.concatenate([env.data.qpos[skipped:], env.data.qvel]))


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_reward_components_add_up(env_id: str) -> None:
    env = _make(env_id)
    env.reset(seed=1)
    batched = envs.make_batched(env_id, num_envs=3)
    batched.set_tasks(batched.sample_tasks(3, np.random.default_rng(1)))
    batched.reset(seed=1)
    actions = _random_actions(env, np.random.default_rng(2), 3, 10)
    for action in actions:
        _, reward, _, _, info = env.step(action[0])
        parts = [v for k, v in info.items() if k.startswith("reward_")]
        assert len(parts) >= 1
        assert sum(parts) == pytest.approx(reward, rel=1e-12, abs=1e-12)
        _, rewards, _, _, binfo = batched.step(action)
        bparts = sum(v for k, v in binfo.items() if k.startswith("reward_"))
        np.testing.assert_allclose(bparts, rewards, rtol=1e-12, atol=1e-12)
    if env_id in MUJOCO_IDS:
        assert {"reward_forward", "reward_ctrl"} <= set(info)
        assert info["reward_ctrl"] <= 0.0
        assert ("reward_survive" in info) == ("Ant" in env_id)
    batched.close()
    env.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_plain_reset_keeps_task(env_id: str) -> None:
    env = _make(env_id)
    task = env.unwrapped.sample_tasks(1, np.random.default_rng(4))[0]
    env.reset(seed=0, options={"task": task})
    env.step(env.action_space.sample())
    _, info = env.reset()
    assert env.unwrapped.get_task() == task
    assert info["task"] == task
    env.close()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_reset_with_task_option_changes_task(env_id: str) -> None:
    env = _make(env_id)
    first, second = env.unwrapped.sample_tasks(2, np.random.default_rng(9))
    if first == second:  # two directions can coincide; pick the other one
        field = _field(env)
        second = {field.name: -first[field.name]}
    env.reset(seed=0, options={"task": first})
    assert env.unwrapped.get_task() == first
    _, info = env.reset(options={"task": second})
    assert env.unwrapped.get_task() == second
    assert info["task"] == second
    _, _, _, _, step_info = env.step(env.action_space.sample())
    assert step_info["task"] == second
    env.close()


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_default_task_is_deterministic(env_id: str) -> None:
    env = _make(env_id).unwrapped
    field = _field(env)
    expected = 1.0 if field.choices is not None else 0.5 * (field.low + field.high)
    assert env.get_task() == {field.name: expected}


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_pickle_roundtrip_keeps_constructor_arguments(env_id: str) -> None:
    field_name = "velocity" if "Vel" in env_id else "direction"
    task = {field_name: 1.0 if field_name == "direction" else 0.25}
    env = _make(env_id, ctrl_cost_weight=0.2, reset_noise_scale=0.05, task=task).unwrapped
    clone = pickle.loads(pickle.dumps(env))
    assert type(clone) is type(env)
    assert clone.get_task() == task
    assert clone.params == env.params
    assert clone._reset_noise_scale == 0.05


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_dynamics_match_gymnasium_at_solver_tolerance(env_id: str) -> None:
    base = "HalfCheetah-v5" if "HalfCheetah" in env_id else "Ant-v5"
    kwargs = {} if "HalfCheetah" in env_id else {"include_cfrc_ext_in_observation": False}
    ours, theirs = _make(env_id).unwrapped, gym.make(base, **kwargs).unwrapped
    ours.reset(seed=3)
    theirs.reset(seed=3)
    np.testing.assert_array_equal(ours.data.qpos, theirs.data.qpos)
    rng = np.random.default_rng(0)
    for _ in range(10):
        action = rng.uniform(-1.0, 1.0, ours.model.nu)
        ours.step(action)
        theirs.step(action)
    np.testing.assert_allclose(ours.data.qpos, theirs.data.qpos, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.data.qvel, theirs.data.qvel, rtol=0, atol=1e-6)


_RENDER_SCRIPT = """
import gymnasium as gym, numpy as np, envs
try:
    ref = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=32, height=24)
    ref.reset(seed=0)
    ref.render()
except Exception as exc:
    print("NO-GL", exc)
    raise SystemExit(0)
print("REF-OK")
for env_id in ("metarl/HalfCheetahVel-v0", "metarl/AntDir-v0"):
    env = gym.make(env_id, render_mode="rgb_array", width=32, height=24)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    frame = env.render()
    assert frame.shape == (24, 32, 3) and frame.dtype == np.uint8, frame.shape
    env.close()
print("OK")
"""


def test_rgb_array_rendering_works_where_gymnasium_renders() -> None:
    environ = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", _RENDER_SCRIPT],
        env=environ,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "REF-OK" not in done.stdout:
        pytest.skip(f"Gymnasium's own HalfCheetah cannot render here: {done.stdout.strip()}")
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


def test_batched_rejects_single_only_arguments() -> None:
    with pytest.raises(ValueError, match="task"):
        envs.make_batched("metarl/HalfCheetahVel-v0", num_envs=2, task={"velocity": 1.0})


def test_batched_close_is_idempotent() -> None:
    batched = envs.make_batched("metarl/AntVel-v0", num_envs=2, nthread=1)
    batched.close()
    batched.close()
    with pytest.raises(RuntimeError, match="close"):
        batched.step(np.zeros((2, 8)))


def test_batched_truncation_flag_matches_time_limit_on_a_terminal_last_step():
    """Terminated on the horizon's last step: TimeLimit reports truncated too; so do we."""
    task = {"goal": [0.05, 0.0]}
    single = gym.make("metarl/Navigation2D-v0", max_episode_steps=1)
    single.reset(seed=0, options={"task": task})
    _, _, terminated, truncated, _ = single.step(np.array([0.05, 0.0]))
    batched = envs.make_batched("metarl/Navigation2D-v0", 1, horizon=1)
    batched.set_tasks([task])
    batched.reset(seed=0)
    _, _, b_terminated, b_truncated, _ = batched.step(np.array([[0.05, 0.0]]))
    assert (terminated, truncated) == (True, True)
    assert (bool(b_terminated[0]), bool(b_truncated[0])) == (terminated, truncated)


@pytest.mark.parametrize(
    ("offset", "region", "terminated"),
    [
        ((0.009, 0.009), "box", True),  # |Δx|, |Δy| < 0.01: inside pytorch-maml-rl's box
        ((0.009, 0.009), "disk", False),  # ‖Δ‖ = 0.0127 > 0.01: outside the disk
        ((0.0, 0.0099), "disk", True),
        ((0.0, 0.0101), "box", False),
    ],
)
def test_navigation_success_region(offset: tuple[float, float], region: str, terminated: bool):
    goal = [0.05 - offset[0], 0.05 - offset[1]]  # one step of (0.05, 0.05) lands at goal + offset
    single = _make("metarl/Navigation2D-v0", task={"goal": goal}, success_region=region)
    single.reset(seed=0)
    *_, done, _, _ = single.step(np.array([0.05, 0.05], dtype=np.float32))
    assert done is terminated
    batched = BatchedNavigation2D(2, horizon=100, success_region=region)
    batched.set_tasks([{"goal": goal}] * 2)
    batched.reset(seed=0)
    _, _, batch_done, *_ = batched.step(np.full((2, 2), 0.05, dtype=np.float32))
    assert batch_done.tolist() == [terminated] * 2
    with pytest.raises(ValueError, match="success_region"):
        BatchedNavigation2D(2, success_region="circle")
