"""experiments/velocity_tracking.py on a one-iteration HalfCheetahVel run."""

import json
import sys
from pathlib import Path

import pytest

from metarl import cli

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import velocity_tracking  # noqa: E402


@pytest.fixture(scope="module")
def cheetah_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cheetah") / "run"
    config = str(ROOT / "experiments/configs/half_cheetah_vel_finn2017.yaml")
    tiny = ["tasks_per_batch=2", "episodes_per_task=2", "env.horizon=15", "iterations=1"]
    tiny += ["meta_optimizer=adam", "policy.hidden_sizes=[8,8]", "eval.every=0"]
    assert cli.main(["train", config, "--run-dir", str(run_dir), "--set", *tiny]) == 0
    return run_dir


def test_reports_velocity_and_return_per_target_before_and_after(cheetah_run, tmp_path):
    out = tmp_path / "velocity"
    argv = [str(cheetah_run), "--out", str(out), "--targets", "0.0", "1.5", "0.5"]
    assert velocity_tracking.main([*argv, "--episodes", "3"]) == 0
    (result,) = json.loads((out / "velocity.json").read_text())
    assert result["targets"] == [0.0, 1.5, 0.5] and result["iteration"] == 1
    for key in ("velocity_k0", "velocity_k1", "return_k0", "return_k1"):
        assert len(result[key]) == 3
    # θ is the same for every target before adaptation, so is its velocity up to sampling noise;
    # the return differs by the target: -|v - v*| summed over 15 steps.
    assert max(result["velocity_k0"]) - min(result["velocity_k0"]) < 1.0
    assert result["return_k0"][1] < result["return_k0"][0] - 5
    table = (out / "velocity.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| MAML")]
    assert [row.split("|")[3].strip() for row in rows] == ["0.50", "1.50", "0.00"]
    assert (out / "velocity.png").stat().st_size > 0


def test_videos_at_the_slow_and_fast_target_through_the_tracking_camera(cheetah_run, tmp_path):
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")
    from metarl.report.video import make_render_env

    try:
        env = make_render_env("metarl/HalfCheetahVel-v0", 5, 32)
        env.reset(seed=0)
        env.render()
    except Exception as exc:  # no OpenGL backend on this machine
        pytest.skip(f"MuJoCo cannot render here: {exc}")
    assert env.unwrapped.camera_name == "track"  # follows the cheetah; the free camera does not
    env.close()
    videos = tmp_path / "videos"
    argv = [str(cheetah_run), "--out", str(tmp_path), "--episodes", "2", "--video-dir", str(videos)]
    assert velocity_tracking.main(argv) == 0
    names = sorted(p.name for p in videos.iterdir())
    assert names == ["run_k0.gif", "run_v0.5_k1.gif", "run_v1.5_k1.gif"]
