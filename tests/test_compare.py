"""`metarl compare` and :mod:`metarl.stats`: IQM and stratified-bootstrap CIs against hand values,
and a comparison of synthetic run directories whose numbers are computed by hand."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from metarl import compare
from metarl.compare import CompareError, compare_runs
from metarl.config import config_from_dict, save_config
from metarl.report import aggregate
from metarl.stats import bootstrap_band, bootstrap_ci, max_drawdown, smooth

NAV = "metarl/Navigation2D-v0"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# --------------------------------------------------------------------------------------------------
# statistics: rliable through metarl.report.aggregate, and what rliable lacks (metarl.stats)
# --------------------------------------------------------------------------------------------------


def _iqm(x) -> float:
    return aggregate.interval_estimates({"a": np.asarray(x, dtype=float)}, "iqm", reps=50)["a"][0]


def test_iqm_hand_values():
    assert _iqm(np.arange(1, 9)) == 4.5  # mean(3, 4, 5, 6)
    assert _iqm([4, 1, 3, 2]) == 2.5  # mean(2, 3), order does not matter
    assert _iqm([1, 2, 3, 4, 100]) == 3.0  # floor(5/4) = 1 cut at each end: mean(2, 3, 4)
    assert _iqm([7.0]) == 7.0
    assert _iqm([1.0, 5.0, 9.0]) == 5.0  # fewer than 4 values: nothing cut, the mean


def test_bootstrap_of_two_values_has_the_hand_computed_interval():
    # Resampling {0, 1}: the mean is 0 (p 1/4), 0.5 (p 1/2) or 1 (p 1/4), so the 2.5th and
    # 97.5th percentiles are exactly 0 and 1.
    assert bootstrap_ci([0.0, 1.0], np.mean, reps=4000, seed=3) == (0.0, 1.0)
    assert aggregate.interval_estimates({"a": [0.0, 1.0]}, "mean", reps=2000)["a"] == (
        0.5,
        0.0,
        1.0,
    )


def test_rliable_intervals_are_seeded_and_leave_the_global_generator_alone():
    scores = np.random.default_rng(0).normal(size=(10, 3))
    np.random.seed(123)  # noqa: NPY002 (rliable uses the global generator)
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    ci = aggregate.interval_estimates({"a": scores}, "iqm", reps=300, seed=7)["a"]
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    assert ci[1] <= ci[0] <= ci[2] and ci[1] < ci[2]
    assert aggregate.interval_estimates({"a": scores}, "iqm", reps=300, seed=7)["a"] == ci
    assert aggregate.interval_estimates({"a": scores}, "iqm", reps=300, seed=8)["a"] != ci


def test_stratified_bootstrap_resamples_within_each_task():
    # Each column (task) is constant, so every stratified resample is the same matrix and the CI
    # collapses to the point; the pooled bootstrap of the same values does not.
    scores = np.array([[0.0, 10.0], [0.0, 10.0]])
    assert aggregate.interval_estimates({"a": scores}, "iqm", reps=300)["a"] == (5.0, 5.0, 5.0)
    lo, hi = bootstrap_ci(scores.reshape(-1), np.mean, reps=500, seed=0)
    assert lo < 5.0 < hi


def test_a_single_run_has_no_interval():
    assert aggregate.interval_estimates({"a": [3.5]}, "iqm")["a"] == (3.5, None, None)
    assert bootstrap_ci([3.5]) == (3.5, 3.5)


def test_probability_of_improvement_hand_values():
    rliable_metrics = aggregate.require_rliable()[1]
    x, y = np.array([[1.0], [2.0], [3.0]]), np.array([[0.0], [2.0]])
    # pairs x > y: (1,0), (2,0), (3,0), (3,2) = 4, tie (2,2) counts 1/2: 4.5 / 6
    pairs = aggregate.improvement_probabilities({"x": x, "y": y}, reps=200)
    assert [(p["x"], p["y"]) for p in pairs] == [("x", "y"), ("y", "x")]
    assert pairs[0]["p"] == pytest.approx(0.75) and pairs[1]["p"] == pytest.approx(0.25)
    lo, hi = pairs[0]["ci95"]
    assert lo <= 0.75 <= hi and pairs[1]["ci95"] == pytest.approx([1 - hi, 1 - lo])
    assert rliable_metrics.probability_of_improvement(x, y) == pytest.approx(0.75)
    # identical groups: 1/2; a group of one run: no interval
    same = aggregate.improvement_probabilities({"a": x, "b": x.copy()}, reps=50)
    assert same[0]["p"] == 0.5
    assert aggregate.improvement_probabilities({"a": x, "b": y[:1]}, reps=50)[0]["ci95"] is None


def test_closed_form_probability_of_improvement_equals_rliables():
    rliable_metrics = aggregate.require_rliable()[1]
    rng = np.random.default_rng(0)
    for shape_x, shape_y in (((3, 5), (4, 5)), ((2, 7), (2, 7))):
        x = rng.integers(0, 4, size=shape_x).astype(float)  # with ties
        y = rng.integers(0, 4, size=shape_y).astype(float)
        assert aggregate.poi_closed_form(x, y) == pytest.approx(
            rliable_metrics.probability_of_improvement(x, y), abs=1e-12
        )
    assert aggregate.poi_closed_form(x, x) == 0.5


def test_performance_profile_hand_values():
    scores = {"a": np.array([[0.0, 1.0], [2.0, 3.0]])}
    profile = aggregate.performance_profiles(scores, np.array([-1.0, 0.5, 2.5, 3.0]), reps=100)
    assert profile["a"]["fraction"] == [1.0, 0.75, 0.25, 0.0]
    entry = profile["a"]
    assert all(
        lo <= f <= hi for f, lo, hi in zip(entry["fraction"], entry["lo"], entry["hi"], strict=True)
    )


def test_bootstrap_ci_of_the_mean_matches_the_normal_approximation():
    x = np.random.default_rng(1).normal(size=400)
    lo, hi = bootstrap_ci(x, np.mean, reps=4000, seed=0)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert abs((hi - lo) / 2 - half) < 0.1 * half
    assert abs((hi + lo) / 2 - x.mean()) < 0.1 * half


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="finite"):
        aggregate.interval_estimates({"a": [1.0, float("nan")]})


def test_bootstrap_band_handles_missing_values():
    curves = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, np.nan]])
    mean, lo, hi = bootstrap_band(curves, reps=500, seed=0)
    np.testing.assert_allclose(mean, [1.0, 2.0, 2.0])
    assert lo[0] == 0.0 and hi[0] == 2.0  # as the two-value case above
    assert lo[2] == hi[2] == 2.0  # one seed there: no band
    mean1, lo1, hi1 = bootstrap_band(curves[:1])
    np.testing.assert_array_equal(mean1, lo1)
    np.testing.assert_array_equal(mean1, hi1)


def test_smooth_and_drawdown_hand_values():
    np.testing.assert_allclose(smooth([1, 2, 3, 4], 2), [1.0, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(smooth([1, np.nan, 3], 2), [1.0, 1.0, 3.0])
    np.testing.assert_allclose(smooth([1, 2, 3], 1), [1, 2, 3])
    assert max_drawdown([1, 3, 2, 5, 1]) == 4.0
    assert max_drawdown([1, 2, 3]) == 0.0


# --------------------------------------------------------------------------------------------------
# synthetic runs
# --------------------------------------------------------------------------------------------------

N = 20  # iterations per synthetic run: final = last 2, within-run std = last 4, smoothing 1


def _make_run(
    root: Path,
    name: str,
    algorithm: str,
    seed: int,
    post: list[float],
    *,
    meta_optimizer: str = "adam",
    config: dict | None = None,
    env_id: str = NAV,
    grad_norms: list[float] | None = None,
    diverged: bool = False,
    adaptation_means: list[float] | None = None,
) -> Path:
    run = root / name
    run.mkdir(parents=True)
    cfg = config_from_dict(
        {
            "algorithm": algorithm,
            "meta_optimizer": meta_optimizer,
            "seed": seed,
            "env": {"id": env_id},
            **(config or {}),
        }
    )
    save_config(cfg, run / "config.yaml")
    grad_norms = grad_norms or [1.0, 3.0] * (len(post) // 2)
    with (run / "metrics.jsonl").open("w") as f:
        for t, (value, g) in enumerate(zip(post, grad_norms, strict=True), start=1):
            row = {
                "iteration": t,
                "env_steps": 100 * t,
                "wall_time": 0.5 * t,
                "returns/pre_adaptation": value - 1.0,
                "returns/post_adaptation": value,
                "meta/grad_norm": g,
            }
            f.write(json.dumps(row) + "\n")  # NaN is written as the JSON extension token NaN
    (run / "checkpoints").mkdir()
    if diverged:
        (run / "checkpoints" / f"diverged_iter_{len(post) + 1}.pt").write_bytes(b"")
    if adaptation_means is not None:

        def steps(means: list[float]) -> list[dict]:
            return [
                {"k": k, "mean": m, "std": 1.0, "ci95": [m - 1.0, m + 1.0], "per_task": [m]}
                for k, m in enumerate(means)
            ]

        data = {
            "checkpoint_iteration": len(post),
            "env_id": env_id,
            "seed": 1_000_003,
            "protocol": "standard",
            "settings": {"tasks": 5},
            "steps": steps(adaptation_means),
            "random_init": {"steps": steps([-40.0, -35.0, -30.0])},
        }
        (run / "eval").mkdir()
        (run / "eval" / "adaptation.json").write_text(json.dumps(data))
    return run


def _linear(start: float, slope: float, offset: float = 0.0) -> list[float]:
    return [start + slope * t + offset for t in range(1, N + 1)]


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    root = tmp_path / "runs"
    out = []
    # MAML (adam), 4 seeds: -10 + t/2 + offset with a dip of 3 at t = 10 (drawdown 2.5).
    for i, offset in enumerate((0.0, 1.0, 2.0, 10.0)):
        post = _linear(-10.0, 0.5, offset)
        post[9] -= 3.0
        means = [-10.0 + offset, -5.0 + offset, -3.0 + offset] if i < 2 else None
        out.append(_make_run(root, f"maml-{i}", "maml", i, post, adaptation_means=means))
    # FO-MAML (adam), 2 seeds: constant -5 and -3; the second diverged.
    out.append(_make_run(root, "fomaml-0", "fomaml", 0, [-5.0] * N))
    out.append(_make_run(root, "fomaml-1", "fomaml", 1, [-3.0] * N, diverged=True))
    # HF-MAML (sgd), 1 seed: -20 + t, one NaN gradient norm.
    grads = [1.0, 3.0] * (N // 2)
    grads[4] = float("nan")
    out.append(
        _make_run(
            root,
            "hfmaml-0",
            "hfmaml",
            0,
            _linear(-20.0, 1.0),
            meta_optimizer="sgd",
            grad_norms=grads,
        )
    )
    return out


def test_compare_writes_report_summary_and_plots(runs, tmp_path):
    out = tmp_path / "out"
    summary = compare_runs(runs, out, reps=500)
    for name in ("report.md", "summary.json"):
        assert (out / name).is_file()
    pngs = [
        "learning_curve_iterations.png",
        "learning_curve_env_steps.png",
        "learning_curve_wall_clock.png",
        "adaptation_curves.png",
    ]
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
    assert (
        json.loads((out / "summary.json").read_text())["groups"].keys() == summary["groups"].keys()
    )
    assert list(summary["groups"]) == ["MAML (adam)", "FO-MAML (adam)", "HF-MAML (sgd)"]

    report = (out / "report.md").read_text()
    for name in pngs:
        assert f"]({name})" in report  # relative links
    assert "How the numbers were computed" in report
    assert "HF-MAML (sgd): fewer than 2 seeds" in report
    assert "1.25 [" in report  # MAML's IQM with its CI


def test_maml_with_the_dice_estimator_is_a_method_of_its_own(runs, tmp_path):
    dice = [
        _make_run(
            tmp_path / "dice",
            f"dice-{i}",
            "maml",
            i,
            [-1.0] * N,
            config={"maml": {"estimator": "dice"}},
        )
        for i in range(2)
    ]
    summary = compare_runs([*runs, *dice], tmp_path / "out", reps=100)
    assert list(summary["groups"]) == [
        "MAML (adam)",
        "MAML-DiCE (adam)",
        "FO-MAML (adam)",
        "HF-MAML (sgd)",
    ]
    assert summary["groups"]["MAML-DiCE (adam)"]["n_seeds"] == 2
    assert summary["groups"]["MAML (adam)"]["n_seeds"] == 4
    assert not any("differs" in w for w in summary["warnings"])


def test_runs_that_differ_in_a_setting_are_compared_as_variants(runs, tmp_path):
    big_alpha = [
        _make_run(tmp_path / "a", f"a-{i}", "maml", i, [-2.0] * N, config={"inner": {"lr": 0.5}})
        for i in range(2)
    ]
    summary = compare_runs([*big_alpha, *runs[:4]], tmp_path / "out", reps=100)
    # in increasing order of the setting, whatever the order of the run dirs
    assert list(summary["groups"]) == ["MAML (adam, inner.lr=0.1)", "MAML (adam, inner.lr=0.5)"]
    variant = summary["groups"]["MAML (adam, inner.lr=0.5)"]
    assert variant["variant"] == "inner.lr=0.5" and variant["n_seeds"] == 2
    assert variant["variant_settings"] == {"inner.lr": 0.5}
    assert variant["final_return"]["iqm"] == pytest.approx(-2.0)


def test_runs_that_differ_in_an_env_setting_are_variants_with_a_warning(runs, tmp_path):
    box = {"env": {"id": NAV, "kwargs": {"success_region": "box"}}}
    boxed = [
        _make_run(tmp_path / "b", f"b-{i}", "maml", i, [-2.0] * N, config=box) for i in range(2)
    ]
    summary = compare_runs([*runs[:4], *boxed], tmp_path / "out", reps=100)
    assert list(summary["groups"]) == [
        "MAML (adam, env.kwargs.success_region=null)",
        "MAML (adam, env.kwargs.success_region=box)",
    ]
    assert summary["groups"]["MAML (adam, env.kwargs.success_region=box)"]["n_seeds"] == 2
    assert any("env.kwargs.success_region" in w for w in summary["warnings"])


def test_settings_a_method_does_not_read_do_not_make_variants(runs, tmp_path):
    # Adam runs ignore trpo.*, MAML ignores hfmaml.*: still one group of 6 seeds.
    other = [
        _make_run(tmp_path / "o", "kl", "maml", 7, [-2.0] * N, config={"trpo": {"max_kl": 0.05}}),
        _make_run(tmp_path / "o", "hf", "maml", 8, [-2.0] * N, config={"hfmaml": {"delta": 0.1}}),
    ]
    summary = compare_runs([*runs[:4], *other], tmp_path / "out", reps=100)
    assert list(summary["groups"]) == ["MAML (adam)"]
    assert summary["groups"]["MAML (adam)"]["n_seeds"] == 6


def test_compare_numbers_match_hand_computation(runs, tmp_path):
    s = compare_runs(runs, tmp_path / "out", reps=500)
    maml, fomaml, hfmaml = (
        s["groups"][k] for k in ("MAML (adam)", "FO-MAML (adam)", "HF-MAML (sgd)")
    )

    # final = mean of the last 2 of 20 iterations: -0.25 + offset; IQM of 4 seeds = mean of the
    # middle two (0.75, 1.75) = 1.25, while the plain mean is pulled up by the outlier seed.
    np.testing.assert_allclose(maml["final_return"]["per_seed"], [-0.25, 0.75, 1.75, 9.75])
    assert maml["final_return"]["iqm"] == pytest.approx(1.25)
    assert maml["final_return"]["mean"] == pytest.approx(3.0)
    lo, hi = maml["final_return"]["ci95"]
    assert lo <= 1.25 <= hi
    assert maml["across_seed_std"] == pytest.approx(np.std([-0.25, 0.75, 1.75, 9.75], ddof=1))
    # last 4 values step by 0.5: sample std sqrt(1.25 / 3)
    assert maml["within_run_std"] == pytest.approx(math.sqrt(1.25 / 3))
    assert maml["max_drawdown"] == pytest.approx(2.5)
    assert maml["grad_norm_variance"] == pytest.approx(20 / 19)  # ±1 around 2, ddof 1
    assert maml["divergence_events"] == 0

    # two seeds: IQM = mean = -4; the bootstrap means are -5, -4, -3 -> CI exactly [-5, -3]
    assert fomaml["final_return"]["iqm"] == pytest.approx(-4.0)
    assert fomaml["final_return"]["ci95"] == [-5.0, -3.0]
    assert fomaml["across_seed_std"] == pytest.approx(math.sqrt(2))
    assert fomaml["within_run_std"] == 0.0 and fomaml["max_drawdown"] == 0.0
    assert fomaml["divergence_events"] == 1
    assert fomaml["diverged_runs"] == [str(runs[5])]

    # one seed: no CI, no across-seed std; the NaN gradient norm is one divergence event
    assert hfmaml["final_return"]["iqm"] == pytest.approx(-0.5)
    assert hfmaml["final_return"]["ci95"] is None
    assert hfmaml["across_seed_std"] is None or math.isnan(hfmaml["across_seed_std"])
    assert hfmaml["divergence_events"] == 1
    grads = [1.0, 3.0] * (N // 2)
    del grads[4]
    assert hfmaml["grad_norm_variance"] == pytest.approx(np.var(grads, ddof=1))

    # default target: worst initial (HF-MAML, -19) + 0.9 * (best final IQM (MAML, 1.25) + 19)
    target = -19.0 + 0.9 * (1.25 + 19.0)
    assert s["target_return"]["value"] == pytest.approx(target)
    assert "worst group's initial return (-19.00, HF-MAML (sgd)" in s["target_return"]["rule"]
    # first t with -10 + t/2 + offset >= -0.775: t = 19, 17, 15, 1
    assert maml["to_target"]["reached"] == 4
    assert maml["to_target"]["iteration"] == pytest.approx(13.0)
    assert maml["to_target"]["env_steps"] == pytest.approx(1300.0)
    assert maml["to_target"]["wall_clock_s"] == pytest.approx(6.5)
    assert fomaml["to_target"]["reached"] == 0
    assert hfmaml["to_target"]["iteration"] == pytest.approx(20.0)

    # adaptation curves: MAML seeds 0 and 1 evaluated (offsets 0 and 1) -> mean offset 0.5
    adaptation = s["adaptation"]
    steps = adaptation["groups"]["MAML (adam)"]["steps"]
    assert [st["mean"] for st in steps] == pytest.approx([-9.5, -4.5, -2.5])
    assert steps[0]["ci95"] == [-10.0, -9.0]
    assert "FO-MAML (adam)" not in adaptation["groups"]
    # both evaluated runs carry the same random-init curve: counted once, CI over its tasks
    assert adaptation["random_init"]["n_runs"] == 1
    assert adaptation["random_init"]["steps"][0] == {"k": 0, "mean": -40.0, "ci95": [-41.0, -39.0]}


def test_compare_given_target_return(runs, tmp_path):
    s = compare_runs(runs[4:6], tmp_path / "out", target_return=-4.0, reps=200)
    group = s["groups"]["FO-MAML (adam)"]
    assert s["target_return"] == {"value": -4.0, "rule": "given (--target-return)"}
    assert group["to_target"]["reached"] == 1
    assert group["to_target"]["wall_clock_s"] == pytest.approx(0.5)
    assert "no run has eval/adaptation.json" in " ".join(s["notes"])


def test_compare_refuses_mixed_environments(runs, tmp_path):
    other = _make_run(
        tmp_path / "other", "cheetah", "maml", 5, [-1.0] * N, env_id="metarl/HalfCheetahVel-v0"
    )
    with pytest.raises(CompareError, match="different environments") as info:
        compare_runs([*runs[:2], other], tmp_path / "out")
    message = str(info.value)
    assert NAV in message and "metarl/HalfCheetahVel-v0" in message and str(other) in message
    assert not (tmp_path / "out").exists()


def test_compare_cli_errors_are_one_line(runs, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    compare.add_parser(parser.add_subparsers())
    empty = tmp_path / "empty"
    empty.mkdir()
    for bad in ([str(empty)], [str(runs[0]), str(runs[0])], [str(tmp_path / "missing")]):
        args = parser.parse_args(["compare", *bad, "--out", str(tmp_path / "out")])
        assert args.handler(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
    args = parser.parse_args(["compare", *map(str, runs[4:]), "--out", str(tmp_path / "ok")])
    assert args.handler(args) == 0
    assert "final return IQM" in capsys.readouterr().out


def test_compare_without_rliable_stops_with_one_line_saying_how_to_install(
    runs, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "rliable", None)  # import rliable raises ImportError
    parser = argparse.ArgumentParser()
    compare.add_parser(parser.add_subparsers())
    args = parser.parse_args(["compare", *map(str, runs[4:]), "--out", str(tmp_path / "out")])
    assert args.handler(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs rliable" in err and "pip install" in err
    assert not (tmp_path / "out").exists()


def test_a_glob_that_matches_the_output_dir_works_twice(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    compare.add_parser(parser.add_subparsers())
    root = tmp_path / "runs"
    for seed in (0, 1):
        _make_run(root, f"nav-{seed}", "fomaml", seed, [-5.0 + seed] * N)
    (root / "nav-notes").mkdir()  # a non-run directory beside the runs, as a glob would add it
    for _ in range(2):  # the second time runs/nav-* also matches runs/nav-report
        dirs = sorted(str(p) for p in root.glob("nav-*"))
        args = parser.parse_args(["compare", *dirs, "--out", str(root / "nav-report")])
        assert args.handler(args) == 0
    err = capsys.readouterr().err
    assert f"skipped '{root / 'nav-report'}': it is the output directory" in err
    assert f"skipped '{root / 'nav-notes'}': not a metarl run directory" in err
    # named on its own, a non-run directory is still an error
    args = parser.parse_args(["compare", str(root / "nav-notes"), "--out", str(tmp_path / "o")])
    assert args.handler(args) == 2
    assert "not a metarl run directory" in capsys.readouterr().err


def test_compare_reports_probability_of_improvement_and_held_out_scores(runs, tmp_path):
    s = compare_runs(runs, tmp_path / "out", reps=200)
    pairs = {(p["x"], p["y"]): p for p in s["probability_of_improvement"]}
    # MAML finals (-0.25, 0.75, 1.75, 9.75) against FO-MAML (-5, -3): every pair above
    assert pairs[("MAML (adam)", "FO-MAML (adam)")]["p"] == 1.0
    assert pairs[("FO-MAML (adam)", "MAML (adam)")]["p"] == 0.0
    assert pairs[("MAML (adam)", "HF-MAML (sgd)")]["ci95"] is None  # HF-MAML has one seed
    scores = s["adaptation"]["scores"]
    assert scores["k"] == 1 and scores["tasks"] == 1
    assert scores["iqm"]["MAML (adam)"]["iqm"] == pytest.approx(-4.5)  # mean(-5, -4)
    assert (tmp_path / "out" / "performance_profile.png").read_bytes().startswith(PNG_MAGIC)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "P(row > column)" in report and "](performance_profile.png)" in report
