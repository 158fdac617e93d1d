"""Checks of the analytic MAML testbed (metarl.analytic) against closed forms and the theory."""

from __future__ import annotations

import numpy as np
import pytest

from metarl import analytic as an


@pytest.fixture(scope="module")
def family() -> an.TaskFamily:
    return an.make_family(n_tasks=6, dim=5, kappa=0.6, radius=1.5, seed=3)


def _point(family: an.TaskFamily, seed: int = 0, scale: float = 0.7) -> np.ndarray:
    u = np.random.default_rng(seed).standard_normal(family.dim)
    return family.c.mean(axis=0) + scale * u / np.linalg.norm(u)


def test_constants_and_shapes(family: an.TaskFamily) -> None:
    w = _point(family)
    assert family.grad(w).shape == (6, 5)
    assert family.hess(w).shape == (6, 5, 5)
    assert family.loss(w).shape == (6,)
    assert np.allclose(family.A, family.A.transpose(0, 2, 1))
    assert np.linalg.eigvalsh(family.A).min() > 0
    assert family.rho == pytest.approx(6 * 0.6 * 1.5)


def test_task_derivatives_match_finite_differences(family: an.TaskFamily) -> None:
    w, eps = _point(family), 1e-6
    E = np.eye(family.dim)
    g_fd = np.stack(
        [(family.loss(w + eps * e) - family.loss(w - eps * e)) / (2 * eps) for e in E], axis=1
    )
    assert np.allclose(g_fd, family.grad(w), atol=1e-7)
    H_fd = np.stack(
        [(family.grad(w + eps * e) - family.grad(w - eps * e)) / (2 * eps) for e in E], axis=2
    )
    assert np.allclose(H_fd, family.hess(w), atol=1e-6)


@pytest.mark.parametrize("kappa", [0.0, 0.6])
def test_meta_grad_matches_finite_differences_of_F(kappa: float) -> None:
    fam = an.make_family(n_tasks=6, dim=5, kappa=kappa, radius=1.5, seed=3)
    alpha = 1 / (6 * fam.L)
    w, eps = _point(fam, seed=1), 1e-5
    fd = np.array(
        [
            (fam.meta_loss(w + eps * e, alpha) - fam.meta_loss(w - eps * e, alpha)) / (2 * eps)
            for e in np.eye(fam.dim)
        ]
    )
    exact = fam.meta_grad(w, alpha)
    assert np.linalg.norm(fd - exact) < 1e-8 * max(1.0, np.linalg.norm(exact))


def test_hf_hvp_error_shrinks_like_delta_squared(family: an.TaskFamily) -> None:
    """Noise-free oracle: d - hess f u = kappa delta^2 ||u||^2 u exactly (O(delta^2))."""
    idx = np.arange(family.n_tasks)
    w = _point(family)
    u = np.random.default_rng(5).standard_normal((family.n_tasks, family.dim))
    exact = np.einsum("kij,kj->ki", family.hess(w), u)
    clean = an.sample_batch(family, family.n_tasks, 0, np.random.default_rng(0))
    errs = []
    for delta in (1e-1, 5e-2, 2.5e-2):
        err = an.fd_hvp(family, w, idx, u, clean, delta) - exact
        predicted = family.kappa * delta**2 * (u * u).sum(1, keepdims=True) * u
        assert np.allclose(err, predicted, rtol=1e-5, atol=1e-10)
        errs.append(np.linalg.norm(err))
    assert errs[0] / errs[1] == pytest.approx(4.0, rel=1e-3)
    assert errs[1] / errs[2] == pytest.approx(4.0, rel=1e-3)


def test_hf_hvp_on_a_noisy_batch_targets_that_batch_hessian(family: an.TaskFamily) -> None:
    """Same batch D_h for both gradient calls: the noise part of the difference is exact."""
    idx = np.arange(family.n_tasks)
    w = _point(family)
    u = np.random.default_rng(6).standard_normal((family.n_tasks, family.dim))
    batch = an.sample_batch(family, family.n_tasks, 10, np.random.default_rng(1))
    delta = 1e-4
    d = an.fd_hvp(family, w, idx, u, batch, delta)
    target = np.einsum("kij,kj->ki", an.hess_oracle(family, w, idx, batch), u)
    assert np.abs(d - target).max() < 10 * family.kappa * delta**2 * np.abs(u).max() ** 3 + 1e-8


def test_hf_maml_never_calls_the_hessian(
    family: an.TaskFamily, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("HF-MAML must only use the gradient oracle")

    idx = np.arange(family.n_tasks)
    b = an.sample_batches(family, family.n_tasks, an.BatchSizes(), np.random.default_rng(0))
    monkeypatch.setattr(an, "hess_oracle", boom)
    monkeypatch.setattr(an.TaskFamily, "hess", boom)
    g = an.hfmaml_direction(family, _point(family), idx, 0.02, b)
    assert np.all(np.isfinite(g))


def test_estimators_coincide_at_alpha_zero(family: an.TaskFamily) -> None:
    idx = np.arange(family.n_tasks)
    w = _point(family)
    b = an.sample_batches(family, family.n_tasks, an.BatchSizes(), np.random.default_rng(2))
    g = {name: f(family, w, idx, 0.0, b) for name, f in an.DIRECTIONS.items()}
    assert np.allclose(g["maml"], g["fomaml"], rtol=0, atol=1e-14)
    assert np.allclose(g["hfmaml"], g["fomaml"], rtol=0, atol=1e-14)
    # with alpha = 0 and no noise, every estimator is the plain task gradient
    clean = an.sample_batches(
        family, family.n_tasks, an.BatchSizes(0, 0, 0, 0), np.random.default_rng(0)
    )
    assert np.allclose(an.maml_direction(family, w, idx, 0.0, clean), family.grad(w))


def test_fomaml_is_maml_without_the_hessian_term(family: an.TaskFamily) -> None:
    idx = np.array([0, 2, 5])
    w, alpha = _point(family), 0.03
    b = an.sample_batches(family, len(idx), an.BatchSizes(50, 50, 50, 50), np.random.default_rng(4))
    g_maml = an.maml_direction(family, w, idx, alpha, b)
    g_fo = an.fomaml_direction(family, w, idx, alpha, b)
    H = an.hess_oracle(family, w, idx, b.hess)
    assert np.allclose(g_maml, g_fo - alpha * np.einsum("kij,kj->ki", H, g_fo), atol=1e-13)
    # noise-free MAML estimator over all tasks is the exact grad F
    all_idx = np.arange(family.n_tasks)
    clean = an.sample_batches(
        family, family.n_tasks, an.BatchSizes(0, 0, 0, 0), np.random.default_rng(0)
    )
    g = an.maml_direction(family, w, all_idx, alpha, clean).mean(axis=0)
    assert np.allclose(g, family.meta_grad(w, alpha), atol=1e-12)


def _quick_runs(seed: int = 0) -> dict[str, an.RunResult]:
    fam = an.make_family(n_tasks=8, dim=4, eig_range=(1.0, 4.0), kappa=0.3, radius=1.5, seed=7)
    alpha = 1 / (6 * fam.L)
    w0 = _point(fam, seed=11, scale=0.5)
    sizes = an.BatchSizes(2000, 50000, 2000, 100)
    return {
        alg: an.run(fam, alg, alpha, 300, w0=w0, c=1.0, sizes=sizes, seed=seed)
        for alg in ("maml", "fomaml")
    }


def test_quick_convergence_maml_beats_fomaml_floor() -> None:
    runs = _quick_runs()
    maml, fo = runs["maml"].grad_norm[-1], runs["fomaml"].grad_norm[-1]
    assert not runs["maml"].diverged and not runs["fomaml"].diverged
    assert maml < fo / 10, (maml, fo)
    assert fo < 0.1 * runs["fomaml"].grad_norm[0]  # FO-MAML did move, it just stalls


def test_same_seed_same_trajectory() -> None:
    fam = an.make_family(n_tasks=5, dim=3, seed=1)
    w0 = _point(fam)
    kw = {"w0": w0, "sizes": an.BatchSizes(10, 10, 10, 10), "task_batch": 3}
    a = an.run(fam, "hfmaml", 0.02, 50, seed=42, **kw)
    b = an.run(fam, "hfmaml", 0.02, 50, seed=42, **kw)
    c = an.run(fam, "hfmaml", 0.02, 50, seed=43, **kw)
    assert np.array_equal(a.grad_norm, b.grad_norm) and np.array_equal(a.beta, b.beta)
    assert np.array_equal(a.w, b.w)
    assert not np.array_equal(a.grad_norm, c.grad_norm)
    assert np.array_equal(an.make_family(seed=4).A, an.make_family(seed=4).A)


def test_fixed_large_step_diverges_and_is_flagged() -> None:
    fam = an.make_family(n_tasks=5, dim=3, seed=1)
    r = an.run(fam, "maml", 0.02, 200, w0=_point(fam), beta=5.0, seed=0)
    assert r.diverged
    assert np.isnan(r.grad_norm[-1])
    ok = an.run(fam, "maml", 0.02, 200, w0=_point(fam), seed=0)
    assert not ok.diverged and ok.grad_norm[-1] < ok.grad_norm[0]
