"""Problem sizes and repeats of the three ``metarl bench`` modes: full, quick and tiny."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Sizes:
    """Problem sizes and repeats of one benchmark mode (full, quick or tiny)."""

    repeats: int
    env_batch: int
    env_steps: int
    loop_steps: int
    vec_envs: int
    ant_batch: int
    ant_steps: int
    nav_batch: int
    nav_steps: int
    widths: tuple[int, ...]
    scale_tasks: int
    scale_episodes: int
    scale_horizon: int | None
    scale_repeats: int
    e2e_nav_overrides: tuple[str, ...]
    e2e_cheetah_overrides: tuple[str, ...]
    e2e_nav_iterations: int
    e2e_cheetah_iterations: int
    e2e_nav_warmup: int
    e2e_fvp_tasks: float  # TRPO also timed with this trpo.fvp_tasks (both environments)
    hessian_widths: tuple[int, ...]  # section e: MAML with the inner Hessian formed explicitly


FULL = Sizes(
    repeats=5,
    env_batch=400,
    env_steps=200,
    loop_steps=20000,
    vec_envs=8,
    ant_batch=100,
    ant_steps=200,
    nav_batch=400,
    nav_steps=1000,
    widths=(32, 64, 128, 256),
    scale_tasks=10,
    scale_episodes=10,
    scale_horizon=None,
    scale_repeats=5,
    e2e_nav_overrides=(),
    e2e_cheetah_overrides=(),
    e2e_nav_iterations=4,
    e2e_cheetah_iterations=2,
    e2e_nav_warmup=1,
    e2e_fvp_tasks=0.25,
    hessian_widths=(16, 32, 48),
)
QUICK = replace(
    FULL,
    repeats=2,
    loop_steps=10000,
    ant_batch=40,
    ant_steps=100,
    widths=(32, 128),
    hessian_widths=(16, 32),
    scale_repeats=3,
    e2e_cheetah_overrides=("tasks_per_batch=10", "episodes_per_task=10"),
    e2e_nav_iterations=2,
    e2e_cheetah_iterations=1,
)
_SMALL = ("tasks_per_batch=2", "episodes_per_task=2", "env.horizon=10")
TINY = Sizes(  # a smoke test: seconds
    repeats=2,
    env_batch=4,
    env_steps=10,
    loop_steps=50,
    vec_envs=2,
    ant_batch=2,
    ant_steps=10,
    nav_batch=4,
    nav_steps=10,
    widths=(8, 16),
    scale_tasks=2,
    scale_episodes=2,
    scale_horizon=10,
    scale_repeats=2,
    e2e_nav_overrides=_SMALL,
    e2e_cheetah_overrides=_SMALL,
    e2e_nav_iterations=1,
    e2e_cheetah_iterations=1,
    e2e_nav_warmup=0,
    e2e_fvp_tasks=0.25,
    hessian_widths=(8, 16),
)


def sizes_for(quick: bool, tiny: bool = False) -> Sizes:
    """The sizes of the tiny mode if ``tiny``, else of the quick or the full mode."""
    if tiny:
        return TINY
    return QUICK if quick else FULL
