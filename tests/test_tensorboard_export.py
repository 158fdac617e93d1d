"""`metarl tensorboard`: event files rebuilt from metrics.jsonl equal a live run's."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metarl import cli
from metarl.config import load_config
from metarl.tensorboard_export import export_runs, run_names
from metarl.train import train

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "tasks_per_batch=2",
    "episodes_per_task=2",
    "env.horizon=5",
    "policy.hidden_sizes=[4]",
    "iterations=3",
    "inner.steps=2",
    "eval.every=2",
    "eval.num_tasks=2",
    "eval.episodes_per_task=1",
    "eval.steps=2",
    "checkpoint.every=0",
    "sampler.env_threads=0",
    "sampler.torch_threads=1",
]


@pytest.fixture(scope="module")
def live_run(tmp_path_factory) -> Path:
    """A tiny trained run with its live event files (TRPO, 2 inner steps, evaluations)."""
    cfg = load_config(ROOT / "experiments/configs/navigation2d.yaml", TINY)
    run_dir = tmp_path_factory.mktemp("live") / "maml-trpo-seed0"
    assert train(cfg, run_dir, stdout=io.StringIO()).status == "completed"
    return run_dir


def _committed_copy(live_run: Path, dest: Path) -> Path:
    """The run as git keeps it under results/: without its event files."""
    shutil.copytree(live_run, dest, ignore=shutil.ignore_patterns("events.out.tfevents.*"))
    assert not list(dest.rglob("events.out.tfevents.*"))
    return dest


def _events(directory: Path) -> EventAccumulator:
    events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def _scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    events = _events(directory)
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def _texts(directory: Path) -> dict[str, list[tuple[int, bytes]]]:
    events = _events(directory)
    return {
        tag: [(e.step, e.tensor_proto.SerializeToString()) for e in events.Tensors(tag)]
        for tag in events.Tags()["tensors"]
    }


def test_export_equals_the_live_runs_event_files(live_run, tmp_path, capsys):
    run = _committed_copy(live_run, tmp_path / "results/nav/runs/maml-trpo-seed0")
    logdir = tmp_path / "tb"
    code = cli.main(["tensorboard", str(run), "--logdir", str(logdir), "--print-only"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].endswith(f"tensorboard --logdir {logdir}")
    exported = logdir / "maml-trpo-seed0"

    for sub in (".", "by_env_steps"):
        live, got = _scalars(live_run / sub), _scalars(exported / sub)
        assert got == live, sub  # tags, steps and (float32) values, exactly
    live = _scalars(live_run)
    assert {"returns/step_1", "eval/step_1", "eval/post_adaptation", "trpo/accepted"} <= set(live)
    assert [s for s, _ in live["returns/post_adaptation"]] == [1, 2, 3]
    assert [s for s, _ in live["eval/post_adaptation"]] == [2]
    assert "by_env_steps/eval/post_adaptation" in _scalars(live_run / "by_env_steps")

    # the config as text, and the hparams the HPARAMS tab compares runs by
    assert _texts(exported) == _texts(live_run)
    assert "config/text_summary" in _texts(live_run)
    live_hp, got_hp = _events(live_run), _events(exported)
    assert got_hp.PluginTagToContent("hparams") == live_hp.PluginTagToContent("hparams")


def test_reexport_replaces_the_earlier_events(live_run, tmp_path):
    run = _committed_copy(live_run, tmp_path / "run")
    for _ in range(2):
        (export,) = export_runs([run], tmp_path / "tb")
    assert export.iterations == 3 and not export.torn
    assert len(list(export.log_dir.glob("events.out.tfevents.*"))) == 1
    assert len(list((export.log_dir / "by_env_steps").glob("events.out.tfevents.*"))) == 1
    steps = [s for s, _ in _scalars(export.log_dir)["returns/pre_adaptation"]]
    assert steps == [1, 2, 3]


def test_a_directory_of_runs_and_names_that_collide(live_run, tmp_path):
    a = _committed_copy(live_run, tmp_path / "results/nav/runs/maml-seed0")
    b = _committed_copy(live_run, tmp_path / "results/cheetah/runs/maml-seed0")
    c = _committed_copy(live_run, tmp_path / "results/cheetah/runs/fomaml-seed0")
    assert run_names([a, c]) == ["maml-seed0", "fomaml-seed0"]
    assert run_names([a, b]) == ["nav/maml-seed0", "cheetah/maml-seed0"]
    exports = export_runs([tmp_path / "results"], tmp_path / "tb")
    assert sorted(str(e.log_dir.relative_to(tmp_path / "tb")) for e in exports) == [
        "cheetah/fomaml-seed0",
        "cheetah/maml-seed0",
        "nav/maml-seed0",
    ]


def test_unusable_arguments_exit_2(live_run, tmp_path, capsys):
    run = _committed_copy(live_run, tmp_path / "run")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["tensorboard", str(empty), "--print-only"]) == 2
    assert "not a metarl run directory" in capsys.readouterr().err
    # never into results/, never over a run directory's own files (here: the run itself)
    for logdir, message in (
        (ROOT / "results/tensorboard", "inside results/"),
        (tmp_path, "is a run"),
    ):
        args = ["tensorboard", str(run), "--logdir", str(logdir), "--print-only"]
        assert cli.main(args) == 2
        assert message in capsys.readouterr().err
    assert not (ROOT / "results/tensorboard").exists()
    assert not list(run.glob("events.out.tfevents.*"))


def test_a_torn_last_line_is_reported(live_run, tmp_path, capsys):
    run = _committed_copy(live_run, tmp_path / "run")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 4, "env_st')
    code = cli.main(["tensorboard", str(run), "--logdir", str(tmp_path / "tb"), "--print-only"])
    assert code == 0
    assert "unreadable line after iteration 3" in capsys.readouterr().err
