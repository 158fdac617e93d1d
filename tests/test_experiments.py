"""The study scripts: per-environment studies and the stability study, at a tiny size; their sweeps
match the sweep files and (for Navigation2D) the runs started by hand with `metarl train`."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from metarl.config import config_to_dict, load_config, save_config
from metarl.sweep import load_sweep, sweep_from_dict

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
CONFIG = EXPERIMENTS / "configs/navigation2d.yaml"
ENV_SCRIPTS = ("navigation2d", "half_cheetah_vel", "half_cheetah_dir", "ant_vel", "ant_dir")


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_experiment_{name}", EXPERIMENTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _study_helpers() -> ModuleType:
    """experiments/_study.py, as the scripts import it."""
    _script("navigation2d")
    return sys.modules["_study"]


def _run_script(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(EXPERIMENTS / f"{name}.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


# --------------------------------------------------------------------------------------------------
# Per-environment studies
# --------------------------------------------------------------------------------------------------


def test_navigation2d_quick_tiny_end_to_end(tmp_path):
    proc = _run_script("navigation2d", "--quick", "--tiny", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = tmp_path / "runs"
    names = ["maml-adam-seed0", "fomaml-adam-seed0", "hfmaml-adam-seed0"]
    for name in names:
        assert len((runs / name / "metrics.jsonl").read_text().splitlines()) == 3
        adaptation = json.loads((runs / name / "eval/adaptation.json").read_text())
        assert adaptation["settings"]["tasks"] == 2 and len(adaptation["steps"]) == 2
    sweep = json.loads((runs / "sweep_summary.json").read_text())
    assert sweep["counts"]["completed"] == 3
    summary = json.loads((tmp_path / "adam/summary.json").read_text())
    assert set(summary["groups"]) == {"MAML (adam)", "FO-MAML (adam)", "HF-MAML (adam)"}
    assert summary["adaptation"] is not None
    assert (tmp_path / "adam/report.md").is_file()
    assert (tmp_path / "adam/learning_curve_iterations.png").is_file()
    assert not (tmp_path / "all").exists()  # one meta-optimizer: no combined comparison
    assert "adam: " in proc.stdout and "report.md" in proc.stdout

    proc = _run_script(
        "navigation2d", "--quick", "--tiny", "--ablation", "estimator", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dice = load_config(runs / "maml-dice-adam-seed0" / "config.yaml")
    assert dice.algorithm == "maml" and dice.maml.estimator == "dice"
    summary = json.loads((tmp_path / "estimator/summary.json").read_text())
    assert list(summary["groups"]) == ["MAML (adam)", "MAML-DiCE (adam)", "HF-MAML (adam)"]
    assert json.loads((runs / "sweep_summary.json").read_text())["counts"]["runs"] == 3
    assert json.loads((runs / "sweep_summary_estimator.json").read_text())["counts"]["runs"] == 1


def test_navigation2d_defaults_resume_the_runs_started_by_hand(tmp_path):
    """`metarl train experiments/configs/navigation2d.yaml --run-dir DIR --seed N --set
    algorithm=ALG meta_optimizer=OPT iterations=500 sampler.env_threads=1 [outer.lr=0.003]`
    gives exactly the config of the script's run DIR = <algorithm>-<optimizer>-seed<N>."""
    study = _script("navigation2d").STUDY
    data = _study_helpers().build_sweep_dict(study, study.full, tmp_path)
    sweep = sweep_from_dict(data)
    assert len(sweep.runs) == 18
    for spec in sweep.runs:
        alg, opt, seed = spec.name.split("-")
        by_hand = [
            f"algorithm={alg}",
            f"meta_optimizer={opt}",
            "iterations=500",
            "sampler.env_threads=1",
            *(["outer.lr=0.003"] if opt == "adam" else []),
            f"seed={seed.removeprefix('seed')}",
        ]
        assert config_to_dict(spec.cfg) == config_to_dict(load_config(CONFIG, by_hand)), spec.name
        assert spec.run_dir == tmp_path / "runs" / spec.name
    assert sweep.evaluate == {"tasks": 40, "steps": 3, "episodes": 20, "protocol": "paper"}


@pytest.mark.parametrize("name", ENV_SCRIPTS)
def test_env_script_dry_runs(name, tmp_path, capsys):
    module = _script(name)
    assert module.main(module.STUDY, module.__doc__, ["--dry-run", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    expected = 18 if name == "navigation2d" else 9
    assert f"dry run: {expected} runs" in printed
    assert "hfmaml-trpo-seed2: new" in printed
    assert "Budget" in module.__doc__ and "wall-clock" in module.__doc__.lower()
    args = ["--dry-run", "--quick", "--seeds", "1", "--meta-optimizer", "sgd", "adam"]
    assert module.main(module.STUDY, module.__doc__, [*args, "--out", str(tmp_path / "q")]) == 0
    assert "dry run: 6 runs" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


def test_sweep_files_hold_the_scripts_runs(tmp_path):
    def runs(sweep):
        return {s.name: config_to_dict(s.cfg) for s in sweep.runs}

    study = _script("navigation2d").STUDY
    data = _study_helpers().build_sweep_dict(study, study.full, tmp_path)
    from_script = sweep_from_dict(data)
    from_file = load_sweep(EXPERIMENTS / "sweeps/navigation2d.yaml")
    assert runs(from_file) == runs(from_script)
    assert from_file.evaluate == from_script.evaluate
    estimator = study.ablations[0]
    data = _study_helpers().build_ablation_sweep_dict(
        study, estimator, study.full, tmp_path, "trpo"
    )
    from_script = sweep_from_dict(data)
    from_file = load_sweep(EXPERIMENTS / "sweeps/navigation2d_dice.yaml")
    assert runs(from_file) == runs(from_script)
    assert from_file.evaluate == from_script.evaluate
    assert from_file.summary_name == from_script.summary_name == "sweep_summary_estimator"

    stability = _script("stability")
    from_script = sweep_from_dict(stability.build_sweep_dict(stability.FULL, tmp_path))
    assert runs(load_sweep(EXPERIMENTS / "sweeps/stability.yaml")) == runs(from_script)
    assert len(load_sweep(EXPERIMENTS / "sweeps/example.yaml").runs) == 4


# --------------------------------------------------------------------------------------------------
# Stability study
# --------------------------------------------------------------------------------------------------


def test_stability_sweep_is_one_factor_at_a_time(tmp_path):
    stability = _script("stability")
    sweep = sweep_from_dict(stability.build_sweep_dict(stability.FULL, tmp_path))
    assert len(sweep.runs) == 135  # (1 + 4 + 4 + 3 + 3) points × 3 algorithms × 3 seeds
    default = {"inner.lr": 0.1, "outer.lr": 0.003, "tasks_per_batch": 20, "episodes_per_task": 20}
    for spec in sweep.runs:
        cfg = spec.cfg
        point = {
            "inner.lr": cfg.inner.lr,
            "outer.lr": cfg.outer.lr,
            "tasks_per_batch": cfg.tasks_per_batch,
            "episodes_per_task": cfg.episodes_per_task,
        }
        assert sum(point[k] != v for k, v in default.items()) <= 1, spec.name
        assert cfg.meta_optimizer == "adam" and cfg.iterations == 100
    assert sweep.runs[0].name == "maml-a0.1-b0.003-T20-E20-seed0"


def _synthetic_run(root: Path, overrides: list[str], finals: list[float], diverged=False) -> Path:
    cfg = load_config(CONFIG, overrides)
    run_dir = root / "-".join(o.replace("=", "") for o in overrides)
    run_dir.mkdir(parents=True)
    save_config(cfg, run_dir / "config.yaml")
    rows = [
        {
            "iteration": i + 1,
            "env_steps": 100 * (i + 1),
            "wall_time": float(i),
            "returns/pre_adaptation": value - 1.0,
            "returns/post_adaptation": value,
        }
        for i, value in enumerate(finals)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if diverged:
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / f"diverged_iter_{len(rows) + 1}.pt").write_bytes(b"")
    return run_dir


def test_stability_aggregation_and_report_on_synthetic_runs(tmp_path):
    stability = _script("stability")
    factors = stability.TINY.factors  # α ∈ {0.1, 0.5}, β ∈ {0.003, 0.03}, T, E ∈ {2, 3}
    base = ["tasks_per_batch=2", "episodes_per_task=2", "outer.lr=0.003", "iterations=10"]
    runs = []
    for seed, offset in ((0, 0.0), (1, 2.0)):
        for alg in ("maml", "fomaml"):
            tail = [-10.0] * 9 + [-5.0 + offset]  # last 10% of 10 rows = the last row
            runs.append(_synthetic_run(tmp_path, [*base, f"algorithm={alg}", f"seed={seed}"], tail))
            runs.append(
                _synthetic_run(
                    tmp_path, [*base, f"algorithm={alg}", f"seed={seed}", "inner.lr=0.5"], tail
                )
            )
    # MAML at β = 0.03: seed 0 diverges after 4 iterations, seed 1 finishes
    runs.append(
        _synthetic_run(
            tmp_path,
            [*base, "algorithm=maml", "seed=0", "outer.lr=0.03"],
            [-10.0] * 4,
            diverged=True,
        )
    )
    runs.append(
        _synthetic_run(tmp_path, [*base, "algorithm=maml", "seed=1", "outer.lr=0.03"], [-7.0] * 10)
    )
    # an unfinished run (no divergence, 3/10 rows) is left out with a warning
    runs.append(
        _synthetic_run(tmp_path, [*base, "algorithm=fomaml", "seed=0", "outer.lr=0.03"], [-1.0] * 3)
    )

    summary = stability.aggregate(runs, factors, ["maml", "fomaml"])
    alpha = summary["factors"]["inner.lr"]["results"]
    for alg in ("maml", "fomaml"):
        for cell in alpha[alg]:  # α = 0.1 (the default point) and 0.5
            assert cell["n_runs"] == 2 and cell["n_diverged"] == 0
            assert cell["final_mean"] == pytest.approx(-4.0)
            assert cell["final_std"] == pytest.approx(2**0.5)  # sample std of {-5, -3}
    beta_maml = summary["factors"]["outer.lr"]["results"]["maml"]
    assert beta_maml[1]["value"] == 0.03
    assert beta_maml[1]["n_runs"] == 2 and beta_maml[1]["n_diverged"] == 1
    assert beta_maml[1]["divergence_rate"] == 0.5
    assert beta_maml[1]["final_mean"] == pytest.approx(-7.0)
    beta_fomaml = summary["factors"]["outer.lr"]["results"]["fomaml"]
    assert beta_fomaml[1]["n_runs"] == 0  # the unfinished run is not counted
    assert len(summary["warnings"]) == 1 and "unfinished" in summary["warnings"][0]
    tasks = summary["factors"]["tasks_per_batch"]["results"]["maml"]
    assert tasks[0]["n_runs"] == 2 and tasks[1]["n_runs"] == 0  # T = 3 was not run

    files = stability.write_results(summary, tmp_path / "out", "settings line")
    for slug in ("inner_lr", "outer_lr", "tasks_per_batch", "episodes_per_task"):
        assert (tmp_path / "out" / f"{slug}.png").stat().st_size > 1000
    report = (tmp_path / "out/report.md").read_text()
    assert "| 0.03 | -7.00 (n=1); div 1/2 |" in report
    assert "-4.00 ± 1.41 (n=2); div 0/2" in report
    assert "![inner.lr](inner_lr.png)" in report
    saved = json.loads(Path(files["summary"]).read_text())
    assert saved["factors"]["outer.lr"]["results"]["maml"][1]["divergence_rate"] == 0.5


@pytest.mark.slow
def test_stability_quick_tiny_end_to_end(tmp_path):
    proc = _run_script("stability", "--quick", "--tiny", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary["runs"]) == 15  # 5 points × 3 algorithms × 1 seed
    for factor in summary["factors"].values():
        for cells in factor["results"].values():
            assert [c["n_runs"] for c in cells] == [1, 1]
    for slug in ("inner_lr", "outer_lr", "tasks_per_batch", "episodes_per_task"):
        assert (tmp_path / f"{slug}.png").is_file()
    assert "## inner learning rate α" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_half_cheetah_vel_quick_tiny_end_to_end(tmp_path):
    proc = _run_script(
        "half_cheetah_vel", "--quick", "--tiny", "--algorithms", "fomaml", "hfmaml",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "adam/summary.json").read_text())
    assert set(summary["groups"]) == {"FO-MAML (adam)", "HF-MAML (adam)"}
    assert summary["env_id"] == "metarl/HalfCheetahVel-v0"


def test_committed_readmes_match_the_committed_summaries():
    """results/README.md and the main README's results block are what
    experiments/results_readme.py writes from the committed summary.json files (no number is
    typed by hand): rerun that script after committing new results."""
    module = _script("results_readme")
    assert (ROOT / "results/README.md").read_text(encoding="utf-8") == module.results_readme()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == module.main_readme(readme)


def test_results_readme_copes_with_missing_and_diverged_results(tmp_path, monkeypatch):
    module = _script("results_readme")
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    assert "Not run yet" in module.results_readme()  # nothing there yet
    cell = {"value": 0.1, "n_runs": 1, "n_diverged": 1, "final_mean": None, "final_std": None}
    good = {"value": 0.5, "n_runs": 2, "n_diverged": 0, "final_mean": -20.0, "final_std": None}
    stability = {
        "algorithms": ["maml"],
        "default_point": {"inner.lr": 0.1},
        "runs": [{"diverged": True}, {"diverged": False}, {"diverged": False}],
        "factors": {
            "inner.lr": {
                "label": "inner lr α",
                "values": [0.1, 0.5],
                "results": {"maml": [cell, good]},
            }
        },
    }
    (tmp_path / "stability").mkdir()
    (tmp_path / "stability/summary.json").write_text(json.dumps(stability))
    text = module.results_readme()
    assert "| inner lr α | 0.1, 0.5 | -20.0 → -20.0 (–; 1 diverged) |" in text


def test_paper_timing_half_cheetah_study_dry_runs(tmp_path, capsys):
    """The paper-budget study: 3 algorithms × 2 seeds at 40 tasks × 20 episodes, 500
    iterations, evaluated with the paper's protocol."""
    module = _script("half_cheetah_vel_finn2017")
    assert module.main(module.STUDY, module.__doc__, ["--dry-run", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "dry run: 6 runs" in printed and "hfmaml-trpo-seed1: new" in printed
    assert "iterations=500" in printed and "tasks_per_batch" not in printed  # config's 40 × 20
    assert module.STUDY.full.evaluate["protocol"] == "paper"
    assert "Budget" in module.__doc__ and "wall-clock" in module.__doc__.lower()


def test_held_out_by_distance_groups_goals_by_their_distance(tmp_path):
    """Four goals at distances 0.05, 0.15, 0.15 and 0.6: per group the means before and after
    one step, and shares of the mean after one step that add up to it."""
    by_distance = _script("held_out_by_distance")
    goals = [[0.05, 0.0], [0.0, -0.15], [0.09, 0.12], [0.36, 0.48]]
    path = tmp_path / "run" / "adaptation.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {
                "tasks": [{"goal": g} for g in goals],
                "steps": [
                    {"per_task": [-4.0, -10.0, -20.0, -60.0]},
                    {"per_task": [-8.0, -30.0, -10.0, -12.0]},
                ],
            }
        )
    )
    row = by_distance.by_distance(path, edges=(0.0, 0.1, 0.2, 0.5, 0.8))
    assert [g["goals"] for g in row["groups"]] == [1, 2, 0, 1]
    assert [g["before"] for g in row["groups"]] == [-4.0, -15.0, None, -60.0]
    assert [g["after"] for g in row["groups"]] == [-8.0, -20.0, None, -12.0]
    assert [g["share"] for g in row["groups"]] == [-2.0, -10.0, 0.0, -3.0]
    assert row["after"] == sum(g["share"] for g in row["groups"]) == -15.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tasks": [{"goal": [0, 0]}], "steps": [{"per_task": [0.0]}]}))
    with pytest.raises(SystemExit, match="one inner step"):
        by_distance.by_distance(bad)


def test_reference_goals_evaluates_every_policy_on_the_reference_goals(tmp_path, monkeypatch):
    """A metarl run that is a copy of the 'reference' run, on the goals of a test file: the
    same goals, episodes and policy, so Δ is exactly 0; the reference's own numbers are the
    file's per-goal means."""
    import shutil

    import numpy as np

    from metarl.train import resolve_config, train

    module = _script("reference_goals")
    nav = tmp_path / "navigation2d"
    reference = nav / "pytorch_maml_rl" / "seed1"
    cfg = resolve_config(
        CONFIG,
        [
            *("tasks_per_batch=2", "episodes_per_task=2", "env.horizon=10", "meta_optimizer=adam"),
            *("policy.hidden_sizes=[8,8]", "iterations=1", "eval.every=0"),
        ],
    )
    assert train(cfg, reference, tensorboard=False).status == "completed"
    shutil.copytree(reference, nav / "runs" / "maml-box-trpo-seed0")
    goals = [{"goal": np.array([0.1, -0.2])}, {"goal": np.array([0.4, 0.3])}]
    train_returns = np.array([[-10.0, -12.0], [-30.0, -32.0]], dtype=np.float32)
    with (reference / "reference_test_seed7_2goals.npz").open("wb") as f:
        np.savez(
            f,
            tasks=np.array(goals, dtype=object),
            train_returns=train_returns,
            valid_returns=train_returns / 2,
        )
    monkeypatch.setattr(module, "NAV", nav)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "GROUPS", {"copy": "runs/maml-box-trpo-seed[0-9]"})

    assert module.main(["--out", str(tmp_path / "out")]) == 0
    (only,) = json.loads((tmp_path / "out" / "report.json").read_text())
    assert only["name"] == "seed1_test7_2goals" and only["goals"] == 2
    own, ours, copy = only["rows"]
    assert (own["before"], own["after"]) == (-21.0, -10.5)
    assert copy["seeds"][0]["after_minus_reference"] == 0.0
    assert copy["seeds"][0]["ci95"] == [0.0, 0.0]
    assert (copy["before"], copy["after"]) == (ours["before"], ours["after"])
    saved = json.loads(
        (tmp_path / "out" / only["name"] / "pytorch-maml-rl" / "adaptation.json").read_text()
    )
    assert saved["tasks"] == [{"goal": [0.1, -0.2]}, {"goal": [0.4, 0.3]}]
    assert "| copy |" in (tmp_path / "out" / "report.md").read_text()


def test_test_time_inner_step_pairs_each_variant_with_the_trained_evaluation(tmp_path, monkeypatch):
    """With every episode running to the horizon, per-step and per-episode weights are equal,
    so on the same goals and episode seeds each variant's Δ to 'as trained' is exactly 0."""
    from metarl.report.protocol import evaluate_run
    from metarl.train import resolve_config, train

    module = _script("test_time_inner_step")
    nav = tmp_path / "navigation2d"
    run = nav / "runs" / "maml-trpo-seed0"
    cfg = resolve_config(
        CONFIG,
        [
            *("tasks_per_batch=2", "episodes_per_task=2", "env.horizon=10", "meta_optimizer=adam"),
            *("policy.hidden_sizes=[8,8]", "iterations=1", "eval.every=0"),
        ],
    )
    assert train(cfg, run, tensorboard=False).status == "completed"
    evaluate_run(run, tasks=3, steps=2, protocol="paper", step_budget=20)
    seed = module.GOALS_400_SEED
    evaluate_run(
        run, tasks=4, steps=1, episodes=2, seed=seed, out_dir=nav / "held_out_400" / run.name
    )
    monkeypatch.setattr(module, "NAV", nav)

    assert module.main(["--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["runs"] == ["maml-trpo-seed0"]  # no pytorch-maml-rl evaluation here
    for goals, steps in (("40", 2), ("400", 1)):
        table = report["goal_sets"][goals]
        assert set(table) == {"as trained", "inner per_step", "all per_step"}
        for variant in ("inner per_step", "all per_step"):
            row = table[variant]["maml-trpo-seed0"]
            assert len(row["minus_trained"]) == steps
            assert all(d["mean"] == 0.0 and d["ci95"] == [0.0, 0.0] for d in row["minus_trained"])
            assert row["after"] == table["as trained"]["maml-trpo-seed0"]["after"]
    saved = json.loads(
        (
            tmp_path / "out" / "inner_per_step" / "maml-trpo-seed0" / "400" / "adaptation.json"
        ).read_text()
    )
    assert saved["settings"]["overrides"] == ["averaging_parts.inner_loss=per_step"]
    assert saved["seed"] == seed and len(saved["tasks"]) == 4
    assert "| inner per_step |" in (tmp_path / "out" / "report.md").read_text()
