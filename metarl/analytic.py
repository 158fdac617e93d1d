"""Analytic task family for checking MAML / FO-MAML / HF-MAML against the theory.

Reference: Fallah, Mokhtari, Ozdaglar, "On the Convergence Theory of Gradient-Based
Model-Agnostic Meta-Learning Algorithms", AISTATS 2020 (below: "Fallah et al. 2020").

Tasks.  A finite task set i = 1..n (uniform task distribution) with losses

    f_i(w) = 1/2 (w - c_i)^T A_i (w - c_i) + kappa/4 ||w - c_i||^4,

A_i = Q_i diag(lambda_i) Q_i^T symmetric positive definite (random rotation, eigenvalues
log-uniform in ``eig_range``) and centres c_i spread around a common mean.  With r = w - c_i:

    grad f_i   = A_i r + kappa ||r||^2 r
    hess f_i   = A_i + kappa (||r||^2 I + 2 r r^T)
    F(w)       = mean_i F_i(w),   F_i(w) = f_i(w - alpha grad f_i(w))            (MAML objective)
    grad F(w)  = mean_i (I - alpha hess f_i(w)) grad f_i(w - alpha grad f_i(w)).

The quartic term is not globally smooth, so the constants of the paper's assumptions are
taken on the ball ||w - c_i|| <= R (``radius``):  L = max_i lambda_max(A_i) + 3 kappa R^2
(gradient Lipschitz) and rho = 6 kappa R (Hessian Lipschitz; the third derivative of the
quartic has operator norm <= 6 kappa ||r||).  kappa > 0 makes rho > 0, so F's smoothness
really varies with w and HF-MAML's finite difference has a real error; kappa = 0 is the
pure quadratic.

Stochastic oracles.  A data batch D of size m of task i is modelled by one draw of the
sampled loss  f_i(w; D) = f_i(w) + xi_D^T r + 1/2 r^T Xi_D r  with zero-mean xi_D
(E||xi_D||^2 = sigma_g^2 / m) and symmetric Xi_D (E||Xi_D||_F^2 = sigma_h^2 / m), so

    grad~ f_i(w; D) = grad f_i(w) + xi_D + Xi_D r,      hess~ f_i(w; D) = hess f_i(w) + Xi_D.

Both are unbiased with std ~ 1/sqrt(m), and they are consistent: evaluating the gradient
oracle twice on the *same* batch (as HF-MAML does with D_h) differentiates one sampled loss,
exactly as with a real mini-batch.

Meta-gradient estimators (per task i, independent batches D_in, D_o, D_h; w'_i =
w - alpha grad~ f_i(w; D_in), v_i = grad~ f_i(w'_i; D_o)):

    MAML     g_i = (I - alpha hess~ f_i(w; D_h)) v_i       (the stochastic MAML update of
                                                          Fallah et al. 2020, Algorithm 1)
    FO-MAML  g_i = v_i                                    (its first-order approximation)
    HF-MAML  g_i = v_i - alpha d_i,                       (the Hessian-free variant proposed
             d_i = [grad~ f_i(w + delta_i v_i; D_h)        there: the Hessian-vector product
                    - grad~ f_i(w - delta_i v_i; D_h)] / (2 delta_i)   is a central difference
                                                          of the gradient oracle only)

and w <- w - beta_k mean_{i in batch} g_i.  The theory step is beta_k = c / L~(w_k) with
L~(w) = 4L + 2 rho alpha mean_{j in B'} ||grad~ f_j(w; D_beta)|| on an independent task batch
B' (the paper's estimate of F's local smoothness L(w) = 4L + 2 rho alpha E_i||grad f_i(w)||).
HF-MAML uses the paper's delta_i = 1 / (6 rho alpha ||v_i||); we cap the perturbation length
delta_i ||v_i|| at R (the radius on which rho is valid), which also handles alpha = 0,
kappa = 0 and v_i = 0.

What to expect (and why).  FO-MAML's fixed point has mean_i v_i = 0, where
grad F = -alpha mean_i hess f_i v_i != 0 because the A_i differ across tasks: a bias floor
proportional to alpha.  For this family the finite-difference error is exactly
kappa delta_i^2 ||v_i||^2 v_i (central differences are exact for the quadratic part and for
the noise, which is quadratic in w), so HF-MAML's residual is the fraction
alpha kappa (delta_i ||v_i||)^2 (about 3% at alpha = 1/(6L) in the experiment) of FO-MAML's
bias.  MAML's estimator is unbiased up to O(alpha^2 kappa sigma_g^2 / |D_in|) and it stops at
its data-noise floor.  Inside the ball the 2 rho alpha ||grad f|| part of L~ is at most
2 kappa R^2 <= 4L / 6, so beta_k varies by a few percent only; outside it F's curvature does
grow (a fixed step tuned at the solution can fail from a far start), but the inner step damps
it (roughly h (1 - alpha h)^2 for a task curvature h).

Noise and batch sizes (why the experiment's defaults look the way they do).  The paper's MAML
bound keeps a task-sampling term sigma^2 / B, while FO-MAML's extra bias is
~ alpha * Cov_i(hess f_i, grad f_i), which is small for alpha <= 1/(6L).  With a random task
subset per step the task-sampling noise floor of MAML is of the same order as FO-MAML's bias,
so no honest 10x gap can appear.  We therefore use the whole finite task set as the task
batch by default (the B -> n limit, where sigma^2 / B vanishes), keep data noise
(sigma_g, sigma_h) with large D_in / D_o / D_h (D_o largest: its noise enters g_i at first
order, the others only through a factor alpha), and estimate L~ on an independent random
task subset with its own data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

Array = np.ndarray
Algorithm = Literal["maml", "fomaml", "hfmaml"]
ALGORITHMS: tuple[Algorithm, ...] = ("maml", "fomaml", "hfmaml")
#: c in beta_k = c / L~(w_k): the constants of the convergence theorems of Fallah et al. 2020
#: as we read them (MAML 1/12, FO-MAML 1/18, HF-MAML 1/25); they only rescale time.
THEORY_C: dict[str, float] = {"maml": 1 / 12, "fomaml": 1 / 18, "hfmaml": 1 / 25}
DIVERGENCE_THRESHOLD = 1e6


@dataclass(frozen=True)
class TaskFamily:
    """Finite task set f_i(w) = 1/2 r^T A_i r + kappa/4 ||r||^4, r = w - c_i (float64)."""

    A: Array  # (n, d, d) symmetric positive definite
    c: Array  # (n, d) task centres
    kappa: float = 0.0
    radius: float = 1.0  # R: the constants L, rho hold on ||w - c_i|| <= R
    sigma_g: float = 0.0  # per-sample gradient-noise std (additive part)
    sigma_h: float = 0.0  # per-sample Hessian-noise std (Frobenius)

    @property
    def n_tasks(self) -> int:
        return int(self.c.shape[0])

    @property
    def dim(self) -> int:
        return int(self.c.shape[1])

    @cached_property
    def L(self) -> float:
        """Gradient-Lipschitz constant on the ball of radius R: max lambda(A_i) + 3 kappa R^2."""
        return float(np.linalg.eigvalsh(self.A)[:, -1].max() + 3 * self.kappa * self.radius**2)

    @property
    def rho(self) -> float:
        """Hessian-Lipschitz constant on the ball of radius R: 6 kappa R."""
        return 6.0 * self.kappa * self.radius

    def _r(self, W: Array, idx: Array | None) -> tuple[Array, Array]:
        idx = np.arange(self.n_tasks) if idx is None else np.asarray(idx)
        return np.broadcast_to(W, (len(idx), self.dim)) - self.c[idx], idx

    # --- exact per-task quantities; W is (d,) or (k, d), idx (k,) task indices (None: all) ---
    def loss(self, W: Array, idx: Array | None = None) -> Array:
        """f_i(W_i) for each listed task, shape (k,)."""
        r, idx = self._r(W, idx)
        sq = np.einsum("ki,ki->k", r, r)
        return 0.5 * np.einsum("ki,kij,kj->k", r, self.A[idx], r) + 0.25 * self.kappa * sq**2

    def grad(self, W: Array, idx: Array | None = None) -> Array:
        """grad f_i(W_i) = A_i r + kappa ||r||^2 r, shape (k, d)."""
        r, idx = self._r(W, idx)
        sq = np.einsum("ki,ki->k", r, r)
        return np.einsum("kij,kj->ki", self.A[idx], r) + self.kappa * sq[:, None] * r

    def hess(self, W: Array, idx: Array | None = None) -> Array:
        """hess f_i(W_i) = A_i + kappa (||r||^2 I + 2 r r^T), shape (k, d, d)."""
        r, idx = self._r(W, idx)
        sq = np.einsum("ki,ki->k", r, r)
        eye = np.eye(self.dim)
        quart = sq[:, None, None] * eye + 2.0 * np.einsum("ki,kj->kij", r, r)
        return self.A[idx] + self.kappa * quart

    # --- the MAML objective over the whole task set ---
    def meta_loss(self, w: Array, alpha: float) -> float:
        """F(w) = mean_i f_i(w - alpha grad f_i(w))."""
        return float(self.loss(w - alpha * self.grad(w)).mean())

    def meta_grad(self, w: Array, alpha: float) -> Array:
        """grad F(w) = mean_i (I - alpha hess f_i(w)) grad f_i(w - alpha grad f_i(w))."""
        v = self.grad(w - alpha * self.grad(w))
        return (v - alpha * np.einsum("kij,kj->ki", self.hess(w), v)).mean(axis=0)


def _random_rotation(rng: np.random.Generator, n: int, d: int) -> Array:
    q, r = np.linalg.qr(rng.standard_normal((n, d, d)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def make_family(
    n_tasks: int = 20,
    dim: int = 10,
    *,
    eig_range: tuple[float, float] = (1.0, 4.0),
    center_spread: float = 0.5,
    kappa: float = 0.5,
    radius: float = 1.5,
    sigma_g: float = 1.0,
    sigma_h: float = 1.0,
    seed: int = 0,
) -> TaskFamily:
    """Draw A_i = Q_i diag(lambda) Q_i^T (lambda log-uniform in eig_range, Q_i random
    rotations) and c_i = center_spread * z_i with z_i ~ N(0, I/d) (so ||c_i|| ~ center_spread)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.log(eig_range[0]), np.log(eig_range[1])
    lam = np.exp(rng.uniform(lo, hi, size=(n_tasks, dim)))
    Q = _random_rotation(rng, n_tasks, dim)
    A = np.einsum("kij,kj,klj->kil", Q, lam, Q)
    A = 0.5 * (A + A.transpose(0, 2, 1))
    c = center_spread * rng.standard_normal((n_tasks, dim)) / np.sqrt(dim)
    return TaskFamily(A, c, kappa, radius, sigma_g, sigma_h)


# --------------------------------------------------------------------------- oracles
@dataclass(frozen=True)
class Batch:
    """One sampled data batch per listed task: the noise of its sampled loss."""

    xi: Array  # (k, d), E||xi||^2 = sigma_g^2 / m
    Xi: Array  # (k, d, d) symmetric, E||Xi||_F^2 = sigma_h^2 / m


@dataclass(frozen=True)
class BatchSizes:
    """|D_in|, |D_o|, |D_h| and |D_beta| (data used for L~).  0 means noise-free (exact)."""

    inner: int = 1000
    outer: int = 1000
    hess: int = 1000
    beta: int = 100


@dataclass(frozen=True)
class Batches:
    inner: Batch
    outer: Batch
    hess: Batch


def sample_batch(family: TaskFamily, k: int, size: int, rng: np.random.Generator) -> Batch:
    """Noise of k independent batches of `size` samples (size 0: noise-free)."""
    d = family.dim
    z = rng.standard_normal((k, d))
    G = rng.standard_normal((k, d, d))
    scale = 0.0 if size <= 0 else 1.0 / np.sqrt(size)
    xi = (family.sigma_g * scale / np.sqrt(d)) * z
    Xi = (family.sigma_h * scale / np.sqrt(2.0 * d * (d + 1))) * (G + G.transpose(0, 2, 1))
    return Batch(xi, Xi)


def sample_batches(
    family: TaskFamily, k: int, sizes: BatchSizes, rng: np.random.Generator
) -> Batches:
    """Independent D_in, D_o, D_h for k tasks."""
    return Batches(
        sample_batch(family, k, sizes.inner, rng),
        sample_batch(family, k, sizes.outer, rng),
        sample_batch(family, k, sizes.hess, rng),
    )


def grad_oracle(family: TaskFamily, W: Array, idx: Array, batch: Batch) -> Array:
    """grad~ f_i(W_i; D) = grad f_i(W_i) + xi_D + Xi_D (W_i - c_i), shape (k, d)."""
    r, idx = family._r(W, idx)
    return family.grad(W, idx) + batch.xi + np.einsum("kij,kj->ki", batch.Xi, r)


def hess_oracle(family: TaskFamily, W: Array, idx: Array, batch: Batch) -> Array:
    """hess~ f_i(W_i; D) = hess f_i(W_i) + Xi_D, shape (k, d, d)."""
    return family.hess(W, idx) + batch.Xi


# --------------------------------------------------------------- meta-gradient estimators
def _adapted_outer_grad(
    family: TaskFamily, w: Array, idx: Array, alpha: float, b: Batches
) -> Array:
    """v_i = grad~ f_i(w - alpha grad~ f_i(w; D_in); D_o)."""
    w_adapt = w - alpha * grad_oracle(family, w, idx, b.inner)
    return grad_oracle(family, w_adapt, idx, b.outer)


def maml_direction(family: TaskFamily, w: Array, idx: Array, alpha: float, b: Batches) -> Array:
    """MAML: g_i = (I - alpha hess~ f_i(w; D_h)) v_i, shape (k, d)."""
    v = _adapted_outer_grad(family, w, idx, alpha, b)
    return v - alpha * np.einsum("kij,kj->ki", hess_oracle(family, w, idx, b.hess), v)


def fomaml_direction(family: TaskFamily, w: Array, idx: Array, alpha: float, b: Batches) -> Array:
    """FO-MAML: g_i = v_i (the Hessian term of MAML dropped), shape (k, d)."""
    return _adapted_outer_grad(family, w, idx, alpha, b)


def hf_delta(family: TaskFamily, alpha: float, u: Array) -> Array:
    """delta_i = 1 / (6 rho alpha ||u_i||), with the perturbation length delta_i ||u_i|| capped
    at R (where rho is valid; also covers alpha = 0, kappa = 0 and u_i = 0)."""
    denom = 6.0 * family.rho * alpha
    step = family.radius if denom <= 0 else min(1.0 / denom, family.radius)
    return step / np.maximum(np.linalg.norm(u, axis=-1), 1e-300)


def fd_hvp(
    family: TaskFamily, w: Array, idx: Array, u: Array, batch: Batch, delta: Array | float
) -> Array:
    """d_i = [grad~ f_i(w + delta u_i; D) - grad~ f_i(w - delta u_i; D)] / (2 delta) (gradient
    oracle only, same batch D for both evaluations)."""
    dl = np.broadcast_to(np.asarray(delta, dtype=float), (len(idx),))[:, None]
    plus = grad_oracle(family, w + dl * u, idx, batch)
    minus = grad_oracle(family, w - dl * u, idx, batch)
    return (plus - minus) / (2.0 * dl)


def hfmaml_direction(
    family: TaskFamily,
    w: Array,
    idx: Array,
    alpha: float,
    b: Batches,
    delta: Array | float | None = None,
) -> Array:
    """HF-MAML: g_i = v_i - alpha d_i with d_i the finite-difference HVP along v_i on D_h."""
    v = _adapted_outer_grad(family, w, idx, alpha, b)
    if delta is None:
        delta = hf_delta(family, alpha, v)
    return v - alpha * fd_hvp(family, w, idx, v, b.hess, delta)


DIRECTIONS = {"maml": maml_direction, "fomaml": fomaml_direction, "hfmaml": hfmaml_direction}


def smoothness_estimate(
    family: TaskFamily, w: Array, alpha: float, idx: Array, batch: Batch
) -> float:
    """L~(w) = 4L + 2 rho alpha mean_j ||grad~ f_j(w; D_beta)|| over the task batch idx."""
    g = grad_oracle(family, w, idx, batch)
    return 4.0 * family.L + 2.0 * family.rho * alpha * float(np.linalg.norm(g, axis=1).mean())


# --------------------------------------------------------------------------------- run
@dataclass
class RunResult:
    """Exact ||grad F(w_k)|| and F(w_k), k = 0..n_iter (NaN after the divergence point)."""

    grad_norm: Array
    loss: Array
    beta: Array  # step used at iteration k (k = 0..n_iter-1)
    w: Array
    diverged: bool
    max_radius: float  # max over k, i of ||w_k - c_i||
    settings: dict[str, object] = field(default_factory=dict)


def run(
    family: TaskFamily,
    algorithm: Algorithm,
    alpha: float,
    n_iter: int,
    *,
    w0: Array,
    beta: float | None = None,
    c: float | None = None,
    task_batch: int | None = None,
    beta_task_batch: int = 8,
    sizes: BatchSizes | None = None,
    seed: int = 0,
) -> RunResult:
    """Run `algorithm` for n_iter steps w <- w - beta_k mean_{i in B_k} g_i.

    beta=None uses the adaptive theory step beta_k = c / L~(w_k) (c defaults to THEORY_C),
    with L~ from an independent random task batch of size beta_task_batch and fresh data of
    size sizes.beta; a float gives a fixed step.  task_batch=None uses all tasks each step,
    otherwise a random subset (without replacement).  The run stops (NaN-padded, diverged=True)
    once grad F is non-finite or exceeds DIVERGENCE_THRESHOLD.  Same seed, same numbers.
    """
    rng = np.random.default_rng(seed)
    sizes = sizes or BatchSizes()
    c = THEORY_C[algorithm] if c is None else c
    n = family.n_tasks
    n_batch = n if task_batch is None else task_batch
    n_beta_batch = min(beta_task_batch, n)
    direction = DIRECTIONS[algorithm]
    gn = np.full(n_iter + 1, np.nan)
    fl = np.full(n_iter + 1, np.nan)
    betas = np.full(n_iter, np.nan)
    w = np.array(w0, dtype=float)
    max_r = 0.0
    diverged = False
    for k in range(n_iter + 1):
        with np.errstate(all="ignore"):
            gF = family.meta_grad(w, alpha)
            gn[k] = np.linalg.norm(gF)
            fl[k] = family.meta_loss(w, alpha)
        if not np.isfinite(gn[k]) or gn[k] > DIVERGENCE_THRESHOLD:
            diverged = True  # the offending value is kept; later entries stay NaN
            break
        max_r = max(max_r, float(np.linalg.norm(w - family.c, axis=1).max()))
        if k == n_iter:
            break
        idx = np.arange(n) if n_batch >= n else np.sort(rng.choice(n, n_batch, replace=False))
        g = direction(family, w, idx, alpha, sample_batches(family, len(idx), sizes, rng))
        if beta is None:
            idx_b = np.sort(rng.choice(n, n_beta_batch, replace=False))
            batch_b = sample_batch(family, n_beta_batch, sizes.beta, rng)
            betas[k] = c / smoothness_estimate(family, w, alpha, idx_b, batch_b)
        else:
            betas[k] = beta
        with np.errstate(all="ignore"):
            w = w - betas[k] * g.mean(axis=0)
    settings = {
        "algorithm": algorithm,
        "alpha": alpha,
        "n_iter": n_iter,
        "c": c,
        "fixed_beta": beta,
        "task_batch": n_batch,
        "beta_task_batch": n_beta_batch,
        "seed": seed,
        "sizes": sizes.__dict__.copy(),
    }
    return RunResult(gn, fl, betas, w, diverged, max_r, settings)
