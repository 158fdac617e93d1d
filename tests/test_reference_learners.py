"""MAML vs the reference learners of Finn et al. (2017, Fig. 5) end to end, at a tiny size."""

from metarl.compare import compare_runs
from metarl.evaluate import evaluate_run
from metarl.train import resolve_config, train

TINY = (
    "iterations=2",
    "tasks_per_batch=2",
    "episodes_per_task=2",
    "env.horizon=10",
    "meta_optimizer=adam",
    "eval.every=0",
    "policy.hidden_sizes=[8]",
)


def test_maml_pretrained_and_oracle_share_one_adaptation_plot(tmp_path):
    run_dirs = []
    for algorithm in ("maml", "pretrained", "oracle"):
        cfg = resolve_config(
            "experiments/configs/navigation2d.yaml", [*TINY, f"algorithm={algorithm}"]
        )
        run_dir = tmp_path / algorithm
        train(cfg, run_dir)
        result = evaluate_run(run_dir, tasks=3, steps=2, episodes=2)
        assert len(result["steps"]) == 3  # k = 0, 1, 2 for every learner, oracle included
        run_dirs.append(run_dir)
    summary = compare_runs(run_dirs, tmp_path / "report", reps=200)
    adaptation_groups = set(summary["adaptation"]["groups"])
    assert {g.split(" ")[0] for g in adaptation_groups} == {"MAML", "pretrained", "oracle"}
    assert (tmp_path / "report" / "adaptation_curves.png").is_file()
    assert "adaptation_curves.png" in (tmp_path / "report" / "report.md").read_text()


def test_oracle_run_evaluates_held_out_tasks_during_training(tmp_path):
    cfg = resolve_config(
        "experiments/configs/navigation2d.yaml",
        [*TINY, "algorithm=oracle", "eval.every=1", "eval.num_tasks=2", "eval.episodes_per_task=2"],
    )
    result = train(cfg, tmp_path / "oracle")
    assert result.exit_code == 0
    rows = (tmp_path / "oracle" / "metrics.jsonl").read_text().splitlines()
    assert all('"eval/post_adaptation"' in row for row in rows)
