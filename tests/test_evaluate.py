"""`metarl evaluate`: adaptation curves of a tiny trained run on held-out tasks, protocols,
checkpoint selection, videos/trajectory plots and one-line errors."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from metarl import evaluate
from metarl.config import save_config
from metarl.evaluate import EvaluateError, evaluate_run
from metarl.logger import read_metrics
from metarl.train import resolve_config, train

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "tasks_per_batch=2",
    "episodes_per_task=2",
    "env.horizon=10",
    "meta_optimizer=adam",
    "policy.hidden_sizes=[8,8]",
    "iterations=2",
    "eval.every=2",
    "eval.num_tasks=3",
    "eval.episodes_per_task=2",
    "checkpoint.every=1",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train(run_dir: Path, config: str = "navigation2d.yaml", *extra: str) -> Path:
    cfg = resolve_config(ROOT / "experiments/configs" / config, [*TINY, *extra])
    result = train(cfg, run_dir, tensorboard=False, progress_every=100)
    assert result.status == "completed", result.message
    return run_dir


@pytest.fixture(scope="module")
def nav_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("evaluate") / "nav")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    evaluate.add_parser(parser.add_subparsers())
    return parser


def test_evaluate_writes_curves_for_both_policies(nav_run, tmp_path):
    k = 2
    result = evaluate_run(nav_run, tasks=3, steps=k, episodes=2, video_dir=tmp_path / "video")
    saved = json.loads((nav_run / "eval" / "adaptation.json").read_text())
    assert saved["steps"] == result["steps"]
    assert saved["checkpoint_iteration"] == 2 and saved["env_id"] == "metarl/Navigation2D-v0"
    assert saved["seed"] == 1_000_003 and saved["protocol"] == "standard"
    for curve in (saved["steps"], saved["random_init"]["steps"]):
        assert [s["k"] for s in curve] == list(range(k + 1))
        for s in curve:
            assert len(s["per_task"]) == 3
            assert s["mean"] == pytest.approx(sum(s["per_task"]) / 3)
            assert s["ci95"][0] <= s["mean"] <= s["ci95"][1]
            assert (
                math.isfinite(s["std"]) and 0 < s["env_steps"] <= 3 * 2 * 10
            )  # fewer if a goal is reached
    assert saved["settings"]["alphas"] == [0.1, 0.1]
    assert len(saved["tasks"]) == 3
    plot = (nav_run / "eval" / "adaptation.png").read_bytes()
    assert plot.startswith(PNG_MAGIC) and len(plot) > 10_000
    trajectories = (tmp_path / "video" / "trajectories.png").read_bytes()
    assert trajectories.startswith(PNG_MAGIC) and len(trajectories) > 10_000


def test_evaluate_writes_paths_relative_to_the_working_directory(nav_run, monkeypatch):
    monkeypatch.chdir(nav_run.parent)
    evaluate_run(nav_run, tasks=2, steps=1, episodes=2)
    saved = json.loads((nav_run / "eval" / "adaptation.json").read_text())
    assert saved["run_dir"] == "nav"
    assert saved["files"]["json"] == str(Path("nav") / "eval" / "adaptation.json")
    assert saved["method"] == "maml" and saved["algorithm"] == "maml"


def test_evaluate_reproduces_the_runs_held_out_evaluation(nav_run):
    # Same tasks (eval.seed), episodes, and episode seeds as the run's evaluation at iteration 2
    # (eval.steps = 1): k = 0 and k = 1 equal its eval/pre_adaptation and eval/post_adaptation.
    row = read_metrics(nav_run / "metrics.jsonl")[-1]
    result = evaluate_run(nav_run, tasks=3, steps=2, episodes=2)
    assert result["steps"][0]["mean"] == pytest.approx(row["eval/pre_adaptation"], rel=1e-5)
    assert result["steps"][1]["mean"] == pytest.approx(row["eval/post_adaptation"], rel=1e-5)
    again = evaluate_run(nav_run, tasks=3, steps=2, episodes=2)
    assert again["steps"] == result["steps"]  # deterministic


def test_paper_protocol_halves_later_steps_and_uses_a_step_budget(nav_run):
    result = evaluate_run(nav_run, tasks=2, steps=3, protocol="paper", step_budget=40)
    assert result["settings"]["alphas"] == [0.1, 0.05, 0.05]
    assert result["settings"]["episodes_per_task"] == 4  # 40 env steps // horizon 10
    assert [s["alpha"] for s in result["steps"]] == [None, 0.1, 0.05, 0.05]
    assert all(0 < s["env_steps"] <= 2 * 40 for s in result["steps"])  # episodes may end early
    with pytest.raises(EvaluateError, match="less than one episode"):
        evaluate_run(nav_run, tasks=2, steps=1, step_budget=5)


def test_checkpoint_selection(nav_run):
    assert (
        evaluate_run(nav_run, checkpoint=1, tasks=2, steps=1, episodes=1)["checkpoint_iteration"]
        == 1
    )
    with pytest.raises(EvaluateError, match=r"no checkpoint of iteration 7 .*1, 2"):
        evaluate_run(nav_run, checkpoint=7, tasks=2, steps=1, episodes=1)


def test_training_seed_is_refused(nav_run):
    with pytest.raises(EvaluateError, match="training seed"):
        evaluate_run(nav_run, seed=0, tasks=2, steps=1, episodes=1)


def test_run_dir_without_checkpoints_is_a_clear_error(tmp_path, capsys):
    run_dir = tmp_path / "fresh"
    run_dir.mkdir()
    save_config(
        resolve_config(ROOT / "experiments/configs/navigation2d.yaml"), run_dir / "config.yaml"
    )
    with pytest.raises(EvaluateError, match="has no checkpoints") as info:
        evaluate_run(run_dir)
    assert str(run_dir) in str(info.value)
    for target in (run_dir, tmp_path / "missing"):
        args = _parser().parse_args(["evaluate", str(target)])
        assert args.handler(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and str(target) in err


def test_cli_arguments(nav_run, capsys):
    parser = _parser()
    args = parser.parse_args(
        [
            "evaluate",
            str(nav_run),
            "--checkpoint",
            "2",
            "--tasks",
            "2",
            "--steps",
            "1",
            "--episodes",
            "1",
        ]
    )
    assert args.checkpoint == 2
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "meta-learned" in out and "adaptation.json" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", str(nav_run), "--checkpoint", "newest"])
    args = parser.parse_args(["evaluate", str(nav_run), "--steps", "-1"])
    assert args.handler(args) == 2


def test_oracle_run_sees_the_task(tmp_path):
    run_dir = _train(tmp_path / "oracle", "navigation2d.yaml", "algorithm=oracle", "iterations=1")
    result = evaluate_run(run_dir, tasks=2, steps=1, episodes=1, video_dir=tmp_path / "video")
    assert len(result["steps"]) == len(result["random_init"]["steps"]) == 2
    assert (tmp_path / "video" / "trajectories.png").is_file()


def test_mujoco_video_gifs(tmp_path):
    run_dir = _train(tmp_path / "cheetah", "half_cheetah_vel.yaml", "iterations=1", "eval.every=0")
    result = evaluate_run(run_dir, tasks=2, steps=1, episodes=1, video_dir=tmp_path / "video")
    from PIL import Image

    for name in ("task0_pre_adaptation.gif", "task0_post_1_steps.gif"):
        with Image.open(tmp_path / "video" / name) as gif:
            assert gif.n_frames == 11  # first frame + 10 steps (horizon 10)
    assert set(result["video"]["returns"]) == {"pre_adaptation", "post_1_steps"}


def test_evaluate_on_tasks_from_a_file(nav_run, tmp_path, capsys):
    drawn = evaluate_run(nav_run, tasks=3, steps=1, episodes=2, out_dir=tmp_path / "drawn")
    parser = _parser()
    # The same tasks read back from the earlier adaptation.json give the same numbers.
    args = parser.parse_args(
        [
            *("evaluate", str(nav_run), "--tasks-from", str(tmp_path / "drawn/adaptation.json")),
            *("--steps", "1", "--episodes", "2", "--out", str(tmp_path / "again")),
        ]
    )
    assert args.handler(args) == 0
    assert "3 held-out tasks (given, episode seed 1000003)" in capsys.readouterr().out
    again = json.loads((tmp_path / "again/adaptation.json").read_text())
    assert again["steps"] == drawn["steps"] and again["tasks"] == drawn["tasks"]
    assert again["settings"]["tasks_given"] and not drawn["settings"]["tasks_given"]

    # A plain list: these goals and no others, validated by the env.
    goals = [{"goal": [0.0, 0.0]}, {"goal": [0.5, -0.5]}]
    (tmp_path / "goals.json").write_text(json.dumps(goals))
    result = evaluate_run(
        nav_run, tasks=evaluate.load_tasks(tmp_path / "goals.json"), steps=0, episodes=1
    )
    assert result["tasks"] == goals and len(result["steps"][0]["per_task"]) == 2
    with pytest.raises(EvaluateError, match=r"task 1 .*must lie in \[-0.5, 0.5\]"):
        evaluate_run(nav_run, tasks=[{"goal": [0.0, 0.0]}, {"goal": [2.0, 0.0]}], steps=0)
    with pytest.raises(EvaluateError, match="empty"):
        evaluate_run(nav_run, tasks=[], steps=0)

    for content, message in (
        (None, "not found"),
        ("{", "not readable as JSON"),
        ('{"steps": []}', "expected a non-empty list of tasks"),
        ("[1, 2]", "task 0 is 1, not an object"),
    ):
        path = tmp_path / "bad.json"
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_text(content)
        with pytest.raises(EvaluateError, match=message) as info:
            evaluate.load_tasks(path)
        assert str(path) in str(info.value)
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", str(nav_run), "--tasks", "2", "--tasks-from", "x.json"])


def test_evaluate_with_other_inner_step_settings(nav_run, tmp_path, capsys):
    """--set changes how the inner step adapts (not what was trained); the k = 0 returns stay
    those of the run's own settings, and other keys are refused with a message naming them."""
    plain = evaluate_run(nav_run, tasks=3, steps=2, episodes=2, protocol="paper", out_dir=tmp_path)
    fast = evaluate_run(
        nav_run,
        tasks=3,
        steps=2,
        episodes=2,
        protocol="paper",
        out_dir=tmp_path,
        overrides=["inner.lr=0.5", "averaging_parts.inner_loss=per_step"],
    )
    assert fast["settings"]["alphas"] == [0.5, 0.25]
    assert fast["settings"]["overrides"] == ["inner.lr=0.5", "averaging_parts.inner_loss=per_step"]
    assert plain["settings"]["overrides"] == []
    assert fast["steps"][0] == plain["steps"][0]
    assert fast["steps"][1]["per_task"] != plain["steps"][1]["per_task"]
    with pytest.raises(EvaluateError, match=r"'policy.hidden_sizes=\[4\]': only the inner"):
        evaluate_run(nav_run, tasks=2, steps=1, overrides=["policy.hidden_sizes=[4]"])
    args = _parser().parse_args(["evaluate", str(nav_run), "--set", "inner.lr=-1"])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "inner.lr" in err
