"""Locomotion task distributions on Gymnasium's MuJoCo HalfCheetah-v5 and Ant-v5.

Four families, as in Finn, Abbeel, Levine (2017), Sec. 5.3 and the ProMP / garage benchmarks:
run at a target velocity (``*Vel``) or in a target direction along x (``*Dir``), with the
HalfCheetah or the Ant. Each has a single Gymnasium env (a subclass of Gymnasium's v5 class, so
the model, ``frame_skip = 5``, ``dt = 0.05``, the reset noise and the spaces are Gymnasium's) and
a batched form, :class:`BatchedLocomotion`, that steps ``B`` copies with ``mujoco.rollout`` on a
persistent thread pool.

Exactness. ``mujoco.rollout`` starts the constraint solver of every call from a zero warm-start
(``qacc_warmstart``), while Gymnasium's env carries the warm-start from one env step to the next;
over an episode that tiny difference (at the solver tolerance ``1e-8``) grows chaotically. The
single envs here therefore cold-start the solver the same way: they zero
``data.qacc_warmstart`` before each env step (the ``frame_skip`` MuJoCo steps inside it keep
warm-starting each other, as they do inside one rollout call). Single and batched forms then
produce bit-identical trajectories; they differ from Gymnasium's own ``HalfCheetah-v5`` /
``Ant-v5`` only at the solver tolerance.

Shared code. The observation, the reward terms and the termination are pure vectorized numpy
functions of ``(qpos_before, qpos_after, qvel_after, action, task_params)``
(:func:`locomotion_observation`, :func:`locomotion_step_outputs`), and the reset noise is one
function of a generator (:func:`reset_state`); the single env calls them with a batch of 1.

Torso centre of mass. The paper-timing HalfCheetahVel (see :class:`HalfCheetahVelEnv`) measures
the forward velocity as the velocity of the torso subtree's centre of mass and observes its
position. Neither is part of the (time, qpos, qvel) state that ``mujoco.rollout`` returns, so both
forms read them from two sensors added to the model (:func:`model_with_torso_sensors`):
``subtreecom`` and ``subtreelinvel`` of the torso, always evaluated at the state *after* the env
step. The single env calls ``mj_forward`` after stepping; the batched form asks ``mujoco.rollout``
for one MuJoCo step more than ``frame_skip`` and keeps the state after ``frame_skip`` steps and the
sensors of the extra step (``mj_step`` evaluates sensors in its ``mj_forward`` stage, i.e. for
the state *before* it integrates, which here is the post-step state). The extra step is thrown
away; it costs one MuJoCo step per env step and is only taken when the sensors are used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.spaces import Box
from gymnasium.utils import EzPickle
from mujoco import rollout as mj_rollout

from envs.base import BatchedTaskEnv, Task, TaskDistribution, TaskField, check_action

OBJECTIVES = ("velocity", "direction")
VELOCITY_SOURCES = ("qpos", "torso_com")
TORSO_BODY = "torso"
# names of the sensors added by model_with_torso_sensors (each 3 numbers, world frame)
TORSO_COM_SENSOR = "metarl_torso_subtreecom"
TORSO_COM_VELOCITY_SENSOR = "metarl_torso_subtreelinvel"


@dataclass(frozen=True)
class LocomotionParams:
    """Constants of the pure step functions (everything except state, action and task).

    ``objective`` is ``"velocity"`` (forward term ``-|v_x - v*|``) or ``"direction"``
    (``d · v_x``); ``healthy_reward=None`` means the robot has no health condition (HalfCheetah).
    ``velocity_source`` is ``"qpos"`` (``v_x`` = change of ``qpos[0]`` over ``dt``) or
    ``"torso_com"`` (``v_x`` = x velocity of the torso subtree's centre of mass after the step).
    """

    objective: str
    dt: float
    skipped_qpos: int
    ctrl_cost_weight: float
    healthy_reward: float | None = None
    healthy_z_range: tuple[float, float] = (-np.inf, np.inf)
    terminate_when_unhealthy: bool = False
    velocity_source: str = "qpos"


def reset_state(
    init_qpos: np.ndarray, init_qvel: np.ndarray, noise_scale: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Gymnasium's v5 reset noise: ``qpos ~ init + U[-s, s]``, ``qvel ~ init + s·N(0, 1)``.

    Draws in Gymnasium's order (uniform for qpos, then normal for qvel), so a generator seeded
    like the env's ``np_random`` gives Gymnasium's starting states.
    """
    qpos = init_qpos + rng.uniform(low=-noise_scale, high=noise_scale, size=init_qpos.size)
    qvel = init_qvel + noise_scale * rng.standard_normal(init_qvel.size)
    return qpos, qvel


def compile_model(xml_path: str, sensor_body: str | None = None) -> mujoco.MjModel:
    """The model of ``xml_path`` (optionally with the torso sensors of ``sensor_body``).

    Equal, array for array and in its statistics, to ``MjModel.from_xml_path(xml_path)`` (tested),
    but without MuJoCo's deprecated ``<compiler settotalmass>``, which Gymnasium's
    ``half_cheetah.xml`` uses and which makes every compile print a deprecation warning. The
    attribute is removed from the spec and its effect applied to the compiled model the way the
    compiler applies it (:func:`set_total_mass`).
    """
    spec = mujoco.MjSpec.from_file(xml_path)
    total_mass = float(spec.compiler.settotalmass)
    spec.compiler.settotalmass = -1.0  # unset: applied below
    if sensor_body is not None:
        for name, kind in (
            (TORSO_COM_SENSOR, mujoco.mjtSensor.mjSENS_SUBTREECOM),
            (TORSO_COM_VELOCITY_SENSOR, mujoco.mjtSensor.mjSENS_SUBTREELINVEL),
        ):
            spec.add_sensor(
                name=name, type=kind, objtype=mujoco.mjtObj.mjOBJ_BODY, objname=sensor_body
            )
    model = spec.compile()
    if total_mass > 0:
        set_total_mass(model, total_mass)
    return model


def set_total_mass(model: mujoco.MjModel, total_mass: float) -> None:
    """Scale ``model``'s masses and inertias to ``total_mass``, as ``settotalmass`` does.

    The compiler calls ``mj_setTotalmass`` and then ``mj_setConst``; the mean body mass and
    mean diagonal inertia (``model.stat``, the latter scales the constraint solver's tolerance)
    were computed before the scaling and are recomputed here, with the compiler's formulas and
    summation order, so the result is bit-identical.
    """
    data = mujoco.MjData(model)
    mujoco.mj_setTotalmass(model, total_mass)
    mujoco.mj_setConst(model, data)
    if model.nbody > 1:
        mean_mass = 0.0
        for mass in model.body_mass[1:]:
            mean_mass += float(mass)
        model.stat.meanmass = mean_mass / (model.nbody - 1)
    if model.nv:
        mujoco.mj_resetData(model, data)  # qpos = qpos0
        mujoco.mj_forward(model, data)
        inertia = np.zeros((model.nv, model.nv))
        mujoco.mj_fullM(model, data, inertia)
        mean_inertia = 0.0
        for i in range(model.nv):
            mean_inertia += float(inertia[i, i])
        model.stat.meaninertia = mean_inertia / model.nv


def model_with_torso_sensors(xml_path: str, body: str = TORSO_BODY) -> mujoco.MjModel:
    """The model of ``xml_path`` plus a ``subtreecom`` and a ``subtreelinvel`` sensor of ``body``.

    Sensors do not act on the physics: apart from the sensor arrays the compiled model equals
    ``MjModel.from_xml_path(xml_path)`` (tested), so the dynamics are unchanged.
    """
    return compile_model(xml_path, sensor_body=body)


def torso_sensor_slices(model: mujoco.MjModel) -> tuple[slice, slice]:
    """Slices of ``sensordata`` holding the torso COM position and COM velocity."""
    com, vel = model.sensor(TORSO_COM_SENSOR), model.sensor(TORSO_COM_VELOCITY_SENSOR)
    return (
        slice(int(com.adr[0]), int(com.adr[0]) + 3),
        slice(int(vel.adr[0]), int(vel.adr[0]) + 3),
    )


def locomotion_observation(
    qpos: np.ndarray, qvel: np.ndarray, skipped_qpos: int, torso_com: np.ndarray | None = None
) -> np.ndarray:
    """``concat(qpos[..., skipped_qpos:], qvel[, torso_com])`` (float64), one state or a batch."""
    if torso_com is None:
        return np.concatenate((qpos[..., skipped_qpos:], qvel), axis=-1)
    return np.concatenate((qpos[..., skipped_qpos:], qvel, torso_com), axis=-1)


def locomotion_step_outputs(
    qpos_before: np.ndarray,
    qpos_after: np.ndarray,
    qvel_after: np.ndarray,
    action: np.ndarray,
    task_params: np.ndarray,
    params: LocomotionParams,
    com_velocity: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Reward, termination and info terms of one env step for a batch of ``B`` copies.

    Shapes: ``qpos_* (B, nq)``, ``qvel_after (B, nv)``, ``action (B, nu)``, ``task_params (B, 1)``
    (the target velocity or the direction); ``com_velocity (B, 3)`` is the torso COM velocity
    after the step, needed (only) when ``params.velocity_source == "torso_com"``. Returns
    ``(reward (B,), terminated (B,), parts)`` with ``parts`` holding ``x_velocity``,
    ``reward_forward``, ``reward_ctrl`` (<= 0) and, for robots with a health condition,
    ``reward_survive``; the ``reward_*`` terms add up to the reward.
    """
    if params.velocity_source == "torso_com":
        if com_velocity is None:
            raise ValueError('velocity_source "torso_com" needs the torso COM velocity')
        x_velocity = np.array(com_velocity[:, 0], dtype=np.float64)  # a copy, not a view
    else:
        x_velocity = (qpos_after[:, 0] - qpos_before[:, 0]) / params.dt
    target = task_params[:, 0]
    if params.objective == "velocity":
        reward_forward = -np.abs(x_velocity - target)
    else:
        reward_forward = target * x_velocity
    reward_ctrl = -params.ctrl_cost_weight * np.sum(np.square(action), axis=-1)
    parts = {
        "x_velocity": x_velocity,
        "reward_forward": reward_forward,
        "reward_ctrl": reward_ctrl,
    }
    if params.healthy_reward is None:
        return reward_forward + reward_ctrl, np.zeros(x_velocity.shape, dtype=bool), parts
    min_z, max_z = params.healthy_z_range
    z = qpos_after[:, 2]
    healthy = (
        np.isfinite(qpos_after).all(axis=-1)
        & np.isfinite(qvel_after).all(axis=-1)
        & (min_z <= z)
        & (z <= max_z)
    )
    reward_survive = np.where(healthy, params.healthy_reward, 0.0)
    parts["reward_survive"] = reward_survive
    terminated = ~healthy if params.terminate_when_unhealthy else np.zeros_like(healthy)
    return reward_forward + reward_survive + reward_ctrl, terminated, parts


def _velocity_field(low: float, high: float) -> TaskField:
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"velocity_low ({low}) must be < velocity_high ({high}), both finite")
    return TaskField("velocity", (), float(low), float(high))


DIRECTION_FIELD = TaskField("direction", (), choices=(-1.0, 1.0))


def _check_common(ctrl_cost_weight: float, reset_noise_scale: float) -> None:
    if not ctrl_cost_weight >= 0:
        raise ValueError(f"ctrl_cost_weight must be >= 0, got {ctrl_cost_weight}")
    if not reset_noise_scale >= 0:
        raise ValueError(f"reset_noise_scale must be >= 0, got {reset_noise_scale}")


def _check_torso_options(
    frame_skip: Any, velocity_source: str, include_torso_com_in_observation: Any
) -> int:
    if isinstance(frame_skip, bool) or not isinstance(frame_skip, int | np.integer):
        raise ValueError(f"frame_skip must be an int >= 1, got {frame_skip!r}")
    if frame_skip < 1:
        raise ValueError(f"frame_skip must be an int >= 1, got {frame_skip!r}")
    if velocity_source not in VELOCITY_SOURCES:
        raise ValueError(f"velocity_source {velocity_source!r}: must be one of {VELOCITY_SOURCES}")
    if not isinstance(include_torso_com_in_observation, bool | np.bool_):
        raise ValueError(
            "include_torso_com_in_observation must be a bool, got "
            f"{include_torso_com_in_observation!r}"
        )
    return int(frame_skip)


def _check_healthy(healthy_z_range: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(v) for v in healthy_z_range)
    if not low < high:
        raise ValueError(f"healthy_z_range {tuple(healthy_z_range)}: need low < high")
    return low, high


class _TaskLocomotionMixin:
    """Task API, step and reset shared by the four single envs (mixed before Gymnasium's class).

    Subclasses set ``objective`` and ``skipped_qpos`` and call :meth:`_init_task` at the end of
    their constructor. A subclass that measures or observes the torso centre of mass sets
    ``_torso_sensors`` (and ``_include_torso_com``) *before* ``MujocoEnv.__init__`` builds the
    model, and ``params.velocity_source``.
    """

    objective: ClassVar[str]
    skipped_qpos: ClassVar[int]
    task_distribution: TaskDistribution
    params: LocomotionParams
    # torso COM sensors in the model (read after every env step), and whether they are observed
    _torso_sensors: bool = False
    _include_torso_com: bool = False
    _com_slice: slice = slice(0, 0)
    _com_velocity_slice: slice = slice(0, 0)

    # attributes provided by gymnasium's MujocoEnv
    model: mujoco.MjModel
    data: mujoco.MjData
    init_qpos: np.ndarray
    init_qvel: np.ndarray
    frame_skip: int
    render_mode: str | None
    np_random: np.random.Generator
    fullpath: str
    width: int
    height: int
    _reset_noise_scale: float

    def _init_task(
        self,
        field: TaskField,
        params: LocomotionParams,
        task: Mapping[str, Any] | None,
        default_task: Task,
    ) -> None:
        self.task_distribution = TaskDistribution([field])
        self.params = params
        self.set_task(task if task is not None else default_task)

    # -- task API ---------------------------------------------------------------------------
    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Task]:
        """``n`` tasks drawn from the task distribution with ``rng``."""
        return self.task_distribution.sample(n, rng)

    def set_task(self, task: Mapping[str, Any]) -> None:
        """Set the task (validated; ``ValueError`` names the bad key); takes effect immediately."""
        self._task = self.task_distribution.validate(task)
        self._task_params = self.task_distribution.to_array([self._task])

    def get_task(self) -> Task:
        return dict(self._task)

    # -- gymnasium API ----------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if options and "task" in options:
            self.set_task(options["task"])
        obs, info = super().reset(seed=seed, options=options)  # type: ignore[misc]
        info["task"] = self.get_task()
        return obs, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = check_action(action, self.model.nu)
        qpos_before = self.data.qpos.copy()
        self.do_simulation(action, self.frame_skip)  # type: ignore[attr-defined]
        qpos, qvel = self.data.qpos, self.data.qvel
        com_velocity = (
            self.data.sensordata[None, self._com_velocity_slice] if self._torso_sensors else None
        )
        reward, terminated, parts = locomotion_step_outputs(
            qpos_before[None],
            qpos[None],
            qvel[None],
            action[None],
            self._task_params,
            self.params,
            com_velocity,
        )
        info: dict[str, Any] = {
            "task": self.get_task(),
            "x_position": float(qpos[0]),
            **{key: float(value[0]) for key, value in parts.items()},
        }
        if self.render_mode == "human":
            self.render()  # type: ignore[attr-defined]
        return self._get_obs(), float(reward[0]), bool(terminated[0]), False, info

    # -- MujocoEnv hooks --------------------------------------------------------------------
    def _step_mujoco_simulation(self, ctrl: np.ndarray, n_frames: int) -> None:
        # Cold-start the constraint solver every env step, exactly as one mujoco.rollout call
        # does; this makes the single and batched forms bit-identical (see module docs).
        self.data.qacc_warmstart[:] = 0.0
        super()._step_mujoco_simulation(ctrl, n_frames)  # type: ignore[misc]
        if self._torso_sensors:
            # mj_step evaluated the sensors before its last integration; bring them (and every
            # other derived quantity) to the post-step state (see module docs).
            mujoco.mj_forward(self.model, self.data)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        # MujocoEnv's, with compile_model instead of MjModel.from_xml_path (no deprecated
        # settotalmass, same model) and the torso sensors when they are used
        model = compile_model(self.fullpath, TORSO_BODY if self._torso_sensors else None)
        # as MujocoEnv: only grow the offscreen framebuffer
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        if self._torso_sensors:
            self._com_slice, self._com_velocity_slice = torso_sensor_slices(model)
        return model, mujoco.MjData(model)

    def _get_obs(self) -> np.ndarray:
        torso_com = self.data.sensordata[self._com_slice] if self._include_torso_com else None
        return locomotion_observation(self.data.qpos, self.data.qvel, self.skipped_qpos, torso_com)

    def reset_model(self) -> np.ndarray:
        qpos, qvel = reset_state(
            self.init_qpos, self.init_qvel, self._reset_noise_scale, self.np_random
        )
        self.set_state(qpos, qvel)  # type: ignore[attr-defined]
        return self._get_obs()


_CHEETAH_ARGS = """\
    | Parameter           | Type          | Default  | Description                                 |
    |---------------------|---------------|----------|---------------------------------------------|"""

_CHEETAH_SPACES = """\
    ## Action Space
    `Box(-1, 1, (6,), float32)`, Gymnasium's HalfCheetah-v5: torques of the hinge joints.

    | Num | Action                                  | Min | Max | Joint  |
    |-----|-----------------------------------------|-----|-----|--------|
    | 0   | Torque applied on the back thigh rotor  | -1  | 1   | bthigh |
    | 1   | Torque applied on the back shin rotor   | -1  | 1   | bshin  |
    | 2   | Torque applied on the back foot rotor   | -1  | 1   | bfoot  |
    | 3   | Torque applied on the front thigh rotor | -1  | 1   | fthigh |
    | 4   | Torque applied on the front shin rotor  | -1  | 1   | fshin  |
    | 5   | Torque applied on the front foot rotor  | -1  | 1   | ffoot  |

    MuJoCo clamps the controls to `[-1, 1]`; the control cost uses the action as given.

    ## Observation Space
    `Box(-Inf, Inf, (17,), float64)`: `qpos[1:]` (8) then `qvel` (9), as HalfCheetah-v5.

    | Num   | Observation                                        | Min  | Max |
    |-------|----------------------------------------------------|------|-----|
    | 0     | z-coordinate of the front tip (rootz)              | -Inf | Inf |
    | 1     | angle of the front tip (rooty)                     | -Inf | Inf |
    | 2 - 7 | angles of bthigh, bshin, bfoot, fthigh, fshin, ffoot | -Inf | Inf |
    | 8     | velocity of the x-coordinate of the front tip      | -Inf | Inf |
    | 9     | velocity of the z-coordinate of the front tip      | -Inf | Inf |
    | 10    | angular velocity of the front tip                  | -Inf | Inf |
    | 11-16 | angular velocities of the six actuated joints      | -Inf | Inf |

    The x-coordinate (rootx) is excluded; it is reported in `info["x_position"]`."""

_CHEETAH_DYNAMICS = """\
    ## Starting State
    Gymnasium's: `qpos = init_qpos + U[-reset_noise_scale, reset_noise_scale]^9`,
    `qvel = init_qvel + reset_noise_scale · N(0, I_9)`, drawn from the env's `np_random`.

    ## Episode End
    Never terminates; truncated after `max_episode_steps` = 200 steps by the `TimeLimit`
    wrapper of `gym.make`.

    ## Dynamics
    The dynamics of HalfCheetah-v5 with the constraint solver cold-started each env step
    (`data.qacc_warmstart` is zeroed before the `frame_skip = 5` MuJoCo steps), identical in the
    single and batched (`envs.make_batched`) forms; it differs from Gymnasium's env only at the
    solver tolerance 1e-8. `dt = 0.05`."""

_ANT_SPACES = """\
    ## Action Space
    `Box(-1, 1, (8,), float32)`, Gymnasium's Ant-v5: torques of the eight hip and ankle hinges
    (hip_4, angle_4, hip_1, angle_1, hip_2, angle_2, hip_3, angle_3). MuJoCo clamps the controls
    to `[-1, 1]`; the control cost uses the action as given.

    ## Observation Space
    `Box(-Inf, Inf, (27,), float64)`: `qpos[2:]` (13) then `qvel` (14).

    | Num     | Observation                                            | Min  | Max |
    |---------|--------------------------------------------------------|------|-----|
    | 0       | z-coordinate of the torso (centre)                     | -Inf | Inf |
    | 1 - 4   | orientation of the torso (quaternion w, x, y, z)       | -Inf | Inf |
    | 5 - 12  | angles of the eight hinges (hip, ankle of each leg)    | -Inf | Inf |
    | 13 - 15 | linear velocity of the torso (x, y, z)                 | -Inf | Inf |
    | 16 - 18 | angular velocity of the torso                          | -Inf | Inf |
    | 19 - 26 | angular velocities of the eight hinges                 | -Inf | Inf |

    The torso x, y coordinates are excluded (in `info["x_position"]`). Unlike Ant-v5's default,
    the external contact forces (`cfrc_ext`, 78 numbers) are **not** observed: the batched form
    steps with `mujoco.rollout`, whose returned state (time, qpos, qvel) does not include them,
    so it could not produce them. For the same reason there is no contact cost."""

_ANT_DYNAMICS = """\
    ## Starting State
    Gymnasium's: `qpos = init_qpos + U[-reset_noise_scale, reset_noise_scale]^15`,
    `qvel = init_qvel + reset_noise_scale · N(0, I_14)`, drawn from the env's `np_random`
    (torso at height 0.75 up to noise).

    ## Episode End
    Terminates when the Ant is unhealthy and `terminate_when_unhealthy` is True: unhealthy means
    a non-finite `qpos`/`qvel` entry or the torso z outside `healthy_z_range`. Truncated after
    `max_episode_steps` = 200 steps by the `TimeLimit` wrapper of `gym.make`.

    ## Dynamics
    The dynamics of Ant-v5 with the constraint solver cold-started each env step
    (`data.qacc_warmstart` is zeroed before the `frame_skip = 5` MuJoCo steps), identical in the
    single and batched (`envs.make_batched`) forms; it differs from Gymnasium's env only at the
    solver tolerance 1e-8. `dt = 0.05`. `v_x` is the change of `qpos[0]` (the free joint's x,
    which equals the torso x position) over `dt`."""

_HISTORY = """\
    ## Version History
    * v0: initial version (Gymnasium v5 model, cold-started solver, no contact forces)."""


class HalfCheetahVelEnv(_TaskLocomotionMixin, HalfCheetahEnv):
    __doc__ = rf"""The HalfCheetah must run forward at a target velocity it cannot observe.

    ## Description
    Gymnasium's HalfCheetah-v5 (a planar cat-like robot with six actuated joints) with a task:
    a target forward velocity `v*`. The policy has to infer `v*` from rewards. Used in Finn,
    Abbeel, Levine (2017), Sec. 5.3 ("half-cheetah goal velocity").

{_CHEETAH_SPACES}

    ## Rewards
    `reward = reward_forward + reward_ctrl` with
    `reward_forward = -|v_x - v*|`, `v_x = (qpos_after[0] - qpos_before[0]) / dt` (by default;
    see Paper timing for `velocity_source="torso_com"`), and
    `reward_ctrl = -ctrl_cost_weight · ‖action‖²`. `info` holds `task`, `x_position`,
    `x_velocity`, `reward_forward` and `reward_ctrl`.

    ## Task
    `{{"velocity": v*}}` with `v* ~ U[velocity_low, velocity_high]`; set it with
    `reset(options={{"task": task}})` or `set_task(task)` (a plain `reset()` keeps it). The
    default task is the midpoint of the range, `{{"velocity": 1.0}}` for the default range.

{_CHEETAH_DYNAMICS}

    ## Paper timing (Finn et al. 2017)
    The defaults above are Gymnasium's HalfCheetah-v5 timing (`dt = 0.05`, velocity from
    `qpos[0]`, 17-dim observation). The MAML paper's half-cheetah (rllab) differs in three ways,
    each a keyword argument here:

    * `frame_skip=1`: one MuJoCo step per env step, `dt = 0.01` (the model's timestep), so an
      episode of 200 steps lasts 2 s instead of 10 s;
    * `velocity_source="torso_com"`: `v_x` is the x velocity of the centre of mass of the torso
      subtree (the whole cheetah), MuJoCo's `subtreelinvel` sensor of body `torso` evaluated at
      the state *after* the step (rllab's `get_body_comvel("torso")` after `model.forward()`),
      instead of the finite difference of `qpos[0]`;
    * `include_torso_com_in_observation=True`: the observation is `qpos[1:]` (8), `qvel` (9) and
      the torso subtree's centre of mass (3, the `subtreecom` sensor; its x grows as the cheetah
      runs), 20 dims, `Box(-Inf, Inf, (20,), float64)`.

    The control cost weight 0.05 and `v* ~ U[0, 2]` are already the paper's (rllab applied the
    cost to the action clipped to the bounds; here it uses the action as given, the same for
    actions inside `[-1, 1]`). The batched form
    takes the same arguments and stays bit-identical to the single env (see the module docs for
    how it obtains the post-step sensors). Returns are comparable with the paper's numbers only
    in this variant:

    ```python
    import gymnasium as gym, envs
    env = gym.make(
        "metarl/HalfCheetahVel-v0",
        frame_skip=1,
        velocity_source="torso_com",
        include_torso_com_in_observation=True,
    )  # max_episode_steps 200 = 2 s
    ```

    ## Arguments
{_CHEETAH_ARGS}
    | `velocity_low`      | **float**     | `0.0`    | lower end of the target velocity range      |
    | `velocity_high`     | **float**     | `2.0`    | upper end of the target velocity range      |
    | `ctrl_cost_weight`  | **float**     | `0.05`   | weight of the control cost                  |
    | `reset_noise_scale` | **float**     | `0.1`    | scale of the starting-state noise           |
    | `task`              | **dict**      | `None`   | initial task (else the default task)        |
    | `render_mode`       | **str**       | `None`   | Gymnasium's MuJoCo render modes             |
    | `frame_skip`        | **int**       | `5`      | MuJoCo steps per env step (`dt = 0.01·n`)   |
    | `velocity_source`   | **str**       | `"qpos"` | `"qpos"` or `"torso_com"` (see above)       |
    | `include_torso_com_in_observation` | **bool** | `False` | append the torso COM (3)     |
    | `**mujoco_kwargs`   |               |          | passed to `MujocoEnv` (`width`, ...)        |

    The last four are keyword-only.

    ```python
    import gymnasium as gym, envs
    env = gym.make("metarl/HalfCheetahVel-v0", max_episode_steps=200, velocity_high=3.0)
    ```

{_HISTORY}
    """

    objective = "velocity"
    skipped_qpos = 1

    def __init__(
        self,
        velocity_low: float = 0.0,
        velocity_high: float = 2.0,
        ctrl_cost_weight: float = 0.05,
        reset_noise_scale: float = 0.1,
        task: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        *,
        frame_skip: int = 5,
        velocity_source: str = "qpos",
        include_torso_com_in_observation: bool = False,
        **mujoco_kwargs: Any,
    ):
        # EzPickle is (re-)initialized after the parent constructor, which calls it with its own
        # arguments; ours must win so that unpickling rebuilds this class with these arguments.
        field = _velocity_field(velocity_low, velocity_high)
        _check_common(ctrl_cost_weight, reset_noise_scale)
        frame_skip = _check_torso_options(
            frame_skip, velocity_source, include_torso_com_in_observation
        )
        # read by _initialize_simulation, which MujocoEnv.__init__ calls
        self._include_torso_com = bool(include_torso_com_in_observation)
        self._torso_sensors = velocity_source == "torso_com" or self._include_torso_com
        HalfCheetahEnv.__init__(
            self,
            frame_skip=frame_skip,
            ctrl_cost_weight=ctrl_cost_weight,
            reset_noise_scale=reset_noise_scale,
            render_mode=render_mode,
            **mujoco_kwargs,
        )
        EzPickle.__init__(
            self,
            velocity_low,
            velocity_high,
            ctrl_cost_weight,
            reset_noise_scale,
            task,
            render_mode,
            frame_skip=frame_skip,
            velocity_source=velocity_source,
            include_torso_com_in_observation=include_torso_com_in_observation,
            **mujoco_kwargs,
        )
        if self._include_torso_com:
            size = self.observation_space.shape[0] + 3
            self.observation_space = Box(-np.inf, np.inf, (size,), np.float64)
            self.observation_structure["torso_com"] = 3
        params = LocomotionParams(
            self.objective,
            self.dt,
            self.skipped_qpos,
            ctrl_cost_weight,
            velocity_source=velocity_source,
        )
        self._init_task(field, params, task, {"velocity": 0.5 * (field.low + field.high)})


class HalfCheetahDirEnv(_TaskLocomotionMixin, HalfCheetahEnv):
    __doc__ = rf"""The HalfCheetah must run forward or backward, in a direction it cannot observe.

    ## Description
    Gymnasium's HalfCheetah-v5 with a task: a running direction `d ∈ {{-1, +1}}` along x. Used in
    Finn, Abbeel, Levine (2017), Sec. 5.3 ("half-cheetah forward/backward").

{_CHEETAH_SPACES}

    ## Rewards
    `reward = reward_forward + reward_ctrl` with `reward_forward = d · v_x`,
    `v_x = (qpos_after[0] - qpos_before[0]) / dt`, and
    `reward_ctrl = -ctrl_cost_weight · ‖action‖²`. `info` holds `task`, `x_position`,
    `x_velocity`, `reward_forward` and `reward_ctrl`.

    ## Task
    `{{"direction": d}}` with `d` -1 or +1 with equal probability; set it with
    `reset(options={{"task": task}})` or `set_task(task)` (a plain `reset()` keeps it). The
    default task is `{{"direction": 1.0}}`.

{_CHEETAH_DYNAMICS}

    ## Arguments
{_CHEETAH_ARGS}
    | `ctrl_cost_weight`  | **float**     | `0.05`   | weight of the control cost                  |
    | `reset_noise_scale` | **float**     | `0.1`    | scale of the starting-state noise           |
    | `task`              | **dict**      | `None`   | initial task (else the default task)        |
    | `render_mode`       | **str**       | `None`   | Gymnasium's MuJoCo render modes             |
    | `**mujoco_kwargs`   |               |          | passed to `MujocoEnv` (`width`, ...)        |

    ```python
    import gymnasium as gym, envs
    env = gym.make("metarl/HalfCheetahDir-v0", max_episode_steps=200, ctrl_cost_weight=0.1)
    ```

{_HISTORY}
    """

    objective = "direction"
    skipped_qpos = 1

    def __init__(
        self,
        ctrl_cost_weight: float = 0.05,
        reset_noise_scale: float = 0.1,
        task: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        **mujoco_kwargs: Any,
    ):
        # EzPickle after the parent constructor: see HalfCheetahVelEnv.
        _check_common(ctrl_cost_weight, reset_noise_scale)
        HalfCheetahEnv.__init__(
            self,
            ctrl_cost_weight=ctrl_cost_weight,
            reset_noise_scale=reset_noise_scale,
            render_mode=render_mode,
            **mujoco_kwargs,
        )
        EzPickle.__init__(
            self, ctrl_cost_weight, reset_noise_scale, task, render_mode, **mujoco_kwargs
        )
        params = LocomotionParams(self.objective, self.dt, self.skipped_qpos, ctrl_cost_weight)
        self._init_task(DIRECTION_FIELD, params, task, {"direction": 1.0})


_ANT_ARGS = """\
    | Parameter                  | Type      | Default      | Description                       |
    |----------------------------|-----------|--------------|-----------------------------------|"""

_ANT_COMMON_ARGS = """\
    | `ctrl_cost_weight`         | **float** | `0.5`        | weight of the control cost        |
    | `healthy_reward`           | **float** | `1.0`        | reward per step while healthy     |
    | `healthy_z_range`          | **tuple** | `(0.2, 1.0)` | healthy torso heights             |
    | `terminate_when_unhealthy` | **bool**  | `True`       | terminate when unhealthy          |
    | `reset_noise_scale`        | **float** | `0.1`        | scale of the starting-state noise |
    | `task`                     | **dict**  | `None`       | initial task (else default task)  |
    | `render_mode`              | **str**   | `None`       | Gymnasium's MuJoCo render modes   |
    | `**mujoco_kwargs`          |           |              | passed to `MujocoEnv`             |"""


class _AntTaskEnv(_TaskLocomotionMixin, AntEnv):
    """Shared constructor of the Ant task envs (Ant-v5 without contact forces)."""

    skipped_qpos = 2

    def _init_ant(
        self,
        ctrl_cost_weight: float,
        healthy_reward: float,
        healthy_z_range: tuple[float, float],
        terminate_when_unhealthy: bool,
        reset_noise_scale: float,
        render_mode: str | None,
        mujoco_kwargs: dict[str, Any],
    ) -> LocomotionParams:
        _check_common(ctrl_cost_weight, reset_noise_scale)
        z_range = _check_healthy(healthy_z_range)
        AntEnv.__init__(
            self,
            ctrl_cost_weight=ctrl_cost_weight,
            contact_cost_weight=0.0,
            healthy_reward=healthy_reward,
            terminate_when_unhealthy=terminate_when_unhealthy,
            healthy_z_range=z_range,
            reset_noise_scale=reset_noise_scale,
            include_cfrc_ext_in_observation=False,
            render_mode=render_mode,
            **mujoco_kwargs,
        )
        return LocomotionParams(
            self.objective,
            self.dt,
            self.skipped_qpos,
            float(ctrl_cost_weight),
            healthy_reward=float(healthy_reward),
            healthy_z_range=z_range,
            terminate_when_unhealthy=bool(terminate_when_unhealthy),
        )


class AntVelEnv(_AntTaskEnv):
    __doc__ = rf"""The Ant must walk forward along x at a target velocity it cannot observe.

    ## Description
    Gymnasium's Ant-v5 (a four-legged robot with a free-floating torso and eight actuated
    hinges) with a task: a target velocity `v*` along x. Used in Finn, Abbeel, Levine (2017),
    Sec. 5.3 ("ant goal velocity").

{_ANT_SPACES}

    ## Rewards
    `reward = reward_survive + reward_forward + reward_ctrl` with
    `reward_survive = healthy_reward` while healthy (else 0, as Ant-v5),
    `reward_forward = -|v_x - v*|`, `v_x = (qpos_after[0] - qpos_before[0]) / dt`, and
    `reward_ctrl = -ctrl_cost_weight · ‖action‖²`. No contact cost (see Observation Space).
    `info` holds `task`, `x_position`, `x_velocity`, `reward_forward`, `reward_ctrl` and
    `reward_survive`.

    ## Task
    `{{"velocity": v*}}` with `v* ~ U[velocity_low, velocity_high]`; set it with
    `reset(options={{"task": task}})` or `set_task(task)` (a plain `reset()` keeps it). The
    default task is the midpoint of the range, `{{"velocity": 1.5}}` for the default range.

{_ANT_DYNAMICS}

    ## Arguments
{_ANT_ARGS}
    | `velocity_low`             | **float** | `0.0`        | lowest target velocity            |
    | `velocity_high`            | **float** | `3.0`        | highest target velocity           |
{_ANT_COMMON_ARGS}

    ```python
    import gymnasium as gym, envs
    env = gym.make("metarl/AntVel-v0", max_episode_steps=200, terminate_when_unhealthy=False)
    ```

{_HISTORY}
    """

    objective = "velocity"

    def __init__(
        self,
        velocity_low: float = 0.0,
        velocity_high: float = 3.0,
        ctrl_cost_weight: float = 0.5,
        healthy_reward: float = 1.0,
        healthy_z_range: tuple[float, float] = (0.2, 1.0),
        terminate_when_unhealthy: bool = True,
        reset_noise_scale: float = 0.1,
        task: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        **mujoco_kwargs: Any,
    ):
        # EzPickle after the parent constructor: see HalfCheetahVelEnv.
        field = _velocity_field(velocity_low, velocity_high)
        params = self._init_ant(
            ctrl_cost_weight,
            healthy_reward,
            healthy_z_range,
            terminate_when_unhealthy,
            reset_noise_scale,
            render_mode,
            mujoco_kwargs,
        )
        EzPickle.__init__(
            self,
            velocity_low,
            velocity_high,
            ctrl_cost_weight,
            healthy_reward,
            healthy_z_range,
            terminate_when_unhealthy,
            reset_noise_scale,
            task,
            render_mode,
            **mujoco_kwargs,
        )
        self._init_task(field, params, task, {"velocity": 0.5 * (field.low + field.high)})


class AntDirEnv(_AntTaskEnv):
    __doc__ = rf"""The Ant must walk forward or backward along x, in a direction it cannot observe.

    ## Description
    Gymnasium's Ant-v5 with a task: a walking direction `d ∈ {{-1, +1}}` along x. Used in Finn,
    Abbeel, Levine (2017), Sec. 5.3 ("ant forward/backward").

{_ANT_SPACES}

    ## Rewards
    `reward = reward_survive + reward_forward + reward_ctrl` with
    `reward_survive = healthy_reward` while healthy (else 0, as Ant-v5),
    `reward_forward = d · v_x`, `v_x = (qpos_after[0] - qpos_before[0]) / dt`, and
    `reward_ctrl = -ctrl_cost_weight · ‖action‖²`. No contact cost (see Observation Space).
    `info` holds `task`, `x_position`, `x_velocity`, `reward_forward`, `reward_ctrl` and
    `reward_survive`.

    ## Task
    `{{"direction": d}}` with `d` -1 or +1 with equal probability; set it with
    `reset(options={{"task": task}})` or `set_task(task)` (a plain `reset()` keeps it). The
    default task is `{{"direction": 1.0}}`.

{_ANT_DYNAMICS}

    ## Arguments
{_ANT_ARGS}
{_ANT_COMMON_ARGS}

    ```python
    import gymnasium as gym, envs
    env = gym.make("metarl/AntDir-v0", max_episode_steps=200, healthy_z_range=(0.3, 1.0))
    ```

{_HISTORY}
    """

    objective = "direction"

    def __init__(
        self,
        ctrl_cost_weight: float = 0.5,
        healthy_reward: float = 1.0,
        healthy_z_range: tuple[float, float] = (0.2, 1.0),
        terminate_when_unhealthy: bool = True,
        reset_noise_scale: float = 0.1,
        task: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        **mujoco_kwargs: Any,
    ):
        # EzPickle after the parent constructor: see HalfCheetahVelEnv.
        params = self._init_ant(
            ctrl_cost_weight,
            healthy_reward,
            healthy_z_range,
            terminate_when_unhealthy,
            reset_noise_scale,
            render_mode,
            mujoco_kwargs,
        )
        EzPickle.__init__(
            self,
            ctrl_cost_weight,
            healthy_reward,
            healthy_z_range,
            terminate_when_unhealthy,
            reset_noise_scale,
            task,
            render_mode,
            **mujoco_kwargs,
        )
        self._init_task(DIRECTION_FIELD, params, task, {"direction": 1.0})


def default_nthread() -> int:
    """Rollout threads when none are given: ``min(2, os.cpu_count())``."""
    return min(2, os.cpu_count() or 1)


class BatchedLocomotion(BatchedTaskEnv):
    """``num_envs`` copies of a locomotion task env, stepped together with ``mujoco.rollout``.

    ``env_class`` is one of the single-env classes; ``env_kwargs`` are its constructor arguments
    (minus ``task`` and ``render_mode``). A prototype single env is built with them and provides
    the model, ``init_qpos``/``init_qvel``, ``frame_skip``, the task distribution and the pure
    step functions, so the two forms cannot drift apart. Each env step is one call of a
    persistent ``mujoco.rollout.Rollout`` pool (``nthread`` threads, ``nthread`` MjData) over
    ``frame_skip`` MuJoCo steps with the action repeated, from the full-physics state
    (time, qpos, qvel) of every copy; trajectories are bit-identical to the single env's (see the
    module docs on the solver cold start). Observations are float32 as in every batched env.

    When the env reads the torso centre-of-mass sensors (paper-timing HalfCheetahVel), each call
    runs ``frame_skip + 1`` MuJoCo steps and takes the sensors of the extra one, which are those of
    the post-step state (module docs); reset copies get theirs from a one-step call from their
    starting state.
    """

    env_class: ClassVar[type[_TaskLocomotionMixin]]

    def __init__(
        self,
        num_envs: int,
        horizon: int = 200,
        nthread: int | None = None,
        *,
        env_class: type[_TaskLocomotionMixin] | None = None,
        **env_kwargs: Any,
    ):
        super().__init__(num_envs, horizon)
        if env_class is not None:
            self.env_class = env_class
        if not hasattr(self, "env_class"):
            raise ValueError("BatchedLocomotion needs env_class (a locomotion single-env class)")
        for name in ("task", "render_mode"):
            if name in env_kwargs:
                raise ValueError(f"{name!r} is not an argument of the batched form")
        nthread = default_nthread() if nthread is None else int(nthread)
        if nthread < 0:
            raise ValueError(f"nthread must be >= 0, got {nthread}")
        self.nthread = nthread

        proto = self.env_class(**env_kwargs)
        self._prototype = proto
        self.model: mujoco.MjModel = proto.model
        self.params: LocomotionParams = proto.params
        self.task_distribution = proto.task_distribution
        self.frame_skip = int(proto.frame_skip)
        self.dt = float(proto.dt)  # type: ignore[attr-defined]
        self.obs_dim = int(proto.observation_space.shape[0])  # type: ignore[attr-defined]
        self.act_dim = int(self.model.nu)
        self._init_qpos = proto.init_qpos.copy()
        self._init_qvel = proto.init_qvel.copy()
        self._reset_noise_scale = float(proto._reset_noise_scale)
        self._torso_sensors = bool(proto._torso_sensors)
        self._include_torso_com = bool(proto._include_torso_com)
        self._com_slice = proto._com_slice
        self._com_velocity_slice = proto._com_velocity_slice
        # MuJoCo steps per rollout call: one more to evaluate the sensors at the post-step state
        self._nstep = self.frame_skip + int(self._torso_sensors)

        nq, nv, nu = self.model.nq, self.model.nv, self.model.nu
        nstate = mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_FULLPHYSICS.value)
        if nstate != 1 + nq + nv:
            raise ValueError(
                f"full-physics state has {nstate} numbers, expected time + qpos + qvel = "
                f"{1 + nq + nv}; models with actuator activations, mocap bodies, user data or "
                "plugins are not supported"
            )
        self._qpos = slice(1, 1 + nq)
        self._qvel = slice(1 + nq, 1 + nq + nv)
        # Preallocated, C-contiguous float64 buffers of the hot path.
        self._state = np.zeros((self.num_envs, nstate))
        self._control = np.zeros((self.num_envs, self._nstep, nu))
        self._trajectory = np.zeros((self.num_envs, self._nstep, nstate))
        self._sensordata = np.zeros((self.num_envs, self._nstep, self.model.nsensordata))
        self._sensors = np.zeros((self.num_envs, self.model.nsensordata))  # at the current state
        self._qpos_before = np.zeros((self.num_envs, nq))
        self._models = [self.model] * self.num_envs
        self._datas = [mujoco.MjData(self.model) for _ in range(max(1, nthread))]
        self._pool: mj_rollout.Rollout | None = mj_rollout.Rollout(nthread=nthread)
        self._control_spec = mujoco.mjtState.mjSTATE_CTRL.value

    def _reset_copies(self, which: np.ndarray) -> np.ndarray:
        index = np.flatnonzero(which)
        for i in index:
            qpos, qvel = reset_state(
                self._init_qpos, self._init_qvel, self._reset_noise_scale, self.rngs[i]
            )
            self._state[i, 0] = 0.0
            self._state[i, self._qpos] = qpos
            self._state[i, self._qvel] = qvel
        state = self._state[index]
        if self._torso_sensors:
            self._sensors[index] = self._sensors_of(state)
        torso_com = self._sensors[index, self._com_slice] if self._include_torso_com else None
        obs = locomotion_observation(
            state[:, self._qpos], state[:, self._qvel], self.params.skipped_qpos, torso_com
        )
        return obs.astype(np.float32)

    def _sensors_of(self, state: np.ndarray) -> np.ndarray:
        """Sensor values at the given full-physics states ``(k, nstate)``: ``mj_step`` evaluates
        them before integrating, so a one-step rollout from ``state`` returns them."""
        if self._pool is None:
            raise RuntimeError("reset() after close()")
        k = state.shape[0]
        sensordata = np.zeros((k, 1, self.model.nsensordata))
        self._pool.rollout(
            self._models[:k],
            self._datas,
            np.ascontiguousarray(state),
            np.zeros((k, 1, self.model.nu)),
            control_spec=self._control_spec,
            skip_checks=True,
            nstep=1,
            state=np.zeros((k, 1, state.shape[1])),
            sensordata=sensordata,
        )
        return sensordata[:, 0]

    def _step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._pool is None:
            raise RuntimeError("step() after close()")
        self._control[:] = actions[:, None, :]
        self._pool.rollout(
            self._models,
            self._datas,
            self._state,
            self._control,
            control_spec=self._control_spec,
            skip_checks=True,
            nstep=self._nstep,
            state=self._trajectory,
            sensordata=self._sensordata,
        )
        self._qpos_before[:] = self._state[:, self._qpos]
        self._state[:] = self._trajectory[:, self.frame_skip - 1]
        com_velocity = torso_com = None
        if self._torso_sensors:
            # the extra step's sensors: evaluated at the state after frame_skip steps
            self._sensors[:] = self._sensordata[:, self.frame_skip]
            com_velocity = self._sensors[:, self._com_velocity_slice]
            if self._include_torso_com:
                torso_com = self._sensors[:, self._com_slice]
        qpos, qvel = self._state[:, self._qpos], self._state[:, self._qvel]
        reward, terminated, parts = locomotion_step_outputs(
            self._qpos_before, qpos, qvel, actions, self.task_params, self.params, com_velocity
        )
        obs = locomotion_observation(qpos, qvel, self.params.skipped_qpos, torso_com)
        return obs.astype(np.float32), reward, terminated, parts

    def close(self) -> None:
        """Shut the rollout thread pool down (idempotent)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
            self._prototype.close()  # type: ignore[attr-defined]


class BatchedHalfCheetahVel(BatchedLocomotion):
    """Batched :class:`HalfCheetahVelEnv` (same kwargs minus ``task``/``render_mode``)."""

    env_class = HalfCheetahVelEnv


class BatchedHalfCheetahDir(BatchedLocomotion):
    """Batched :class:`HalfCheetahDirEnv` (same kwargs minus ``task``/``render_mode``)."""

    env_class = HalfCheetahDirEnv


class BatchedAntVel(BatchedLocomotion):
    """Batched :class:`AntVelEnv` (same kwargs minus ``task``/``render_mode``)."""

    env_class = AntVelEnv


class BatchedAntDir(BatchedLocomotion):
    """Batched :class:`AntDirEnv` (same kwargs minus ``task``/``render_mode``)."""

    env_class = AntDirEnv
