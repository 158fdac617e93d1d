"""Returns, advantages and the linear feature baseline (pure tensor functions).

Layout: per-step tensors are ``(K, E, T)`` or ``(K, E, T, D)`` (K tasks, E episodes per task,
T padded horizon steps). ``masks`` is 1.0 on valid steps and 0.0 after an episode terminated;
valid steps form a prefix of each episode. Values at masked steps (rewards, values, observations)
are ignored, even if they are NaN or inf padding, and every output is 0 there.

Episodes end either by termination or at the horizon; in both cases nothing is bootstrapped
after the last valid step (as in MAML-RL).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "LinearFeatureBaseline",
    "compute_advantages",
    "discounted_returns",
    "gae_advantages",
    "normalize_advantages",
    "step_weights",
]

AVERAGING = ("per_episode", "per_step")
# The four averages a step weight enters (config ``averaging_parts``): the inner loss on D_in, the
# outer surrogate on D_o, TRPO's KL on D_o, and the advantage-normalization statistics.
AVERAGING_PARTS = ("inner_loss", "outer_loss", "kl", "advantages")


def _check_same_shape(name: str, x: Tensor, masks: Tensor) -> None:
    if x.shape != masks.shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)} but masks has {tuple(masks.shape)}")
    if x.dim() < 1:
        raise ValueError(f"{name} must have a trailing time dimension, got a scalar")


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def _masked(x: Tensor, valid: Tensor) -> Tensor:
    """``x`` on valid steps, exactly 0 elsewhere (also replaces NaN/inf padding)."""
    return torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))


def discounted_returns(rewards: Tensor, masks: Tensor, gamma: float) -> Tensor:
    """Discounted reward-to-go ``R_t = Σ_{l≥0} γ^l r_{t+l} m_{t+l}``, and 0 where ``m_t = 0``.

    ``rewards`` and ``masks`` have the same shape ``(..., T)``; the result has that shape and the
    dtype of ``rewards``. Computed by the backward recursion ``R_t = m_t (r_t + γ R_{t+1})``.
    """
    _check_same_shape("rewards", rewards, masks)
    _check_unit_interval("gamma", gamma)
    valid = masks > 0
    r = _masked(rewards, valid)
    m = valid.to(r.dtype)
    out = torch.zeros_like(r)
    running = torch.zeros_like(r[..., 0])
    for t in range(r.shape[-1] - 1, -1, -1):
        running = (r[..., t] + gamma * running) * m[..., t]
        out[..., t] = running
    return out


def gae_advantages(
    rewards: Tensor, values: Tensor, masks: Tensor, gamma: float, lam: float
) -> Tensor:
    """Generalized advantage estimation (Schulman et al., 2016).

    ``δ_t = r_t + γ V_{t+1} m_{t+1} − V_t`` and ``A_t = Σ_{l≥0} (γλ)^l δ_{t+l} m_{t+l}``; the
    value after the last valid step (and after the horizon) is 0, i.e. no bootstrapping.
    ``A_t = 0`` where ``m_t = 0``. With ``λ = 1`` this is ``R_t − V_t``; with ``λ = 0`` it is the
    one-step TD residual ``δ_t``. All inputs have the same shape ``(..., T)``.
    """
    _check_same_shape("rewards", rewards, masks)
    _check_same_shape("values", values, masks)
    _check_unit_interval("gamma", gamma)
    _check_unit_interval("lam", lam)
    valid = masks > 0
    r = _masked(rewards, valid)
    v = _masked(values.to(r.dtype), valid)
    m = valid.to(r.dtype)
    next_v = torch.zeros_like(v)
    next_v[..., :-1] = v[..., 1:]  # already 0 where m_{t+1} = 0
    deltas = (r + gamma * next_v - v) * m
    out = torch.zeros_like(r)
    running = torch.zeros_like(r[..., 0])
    decay = gamma * lam
    for t in range(r.shape[-1] - 1, -1, -1):
        running = (deltas[..., t] + decay * running) * m[..., t]
        out[..., t] = running
    return out


class LinearFeatureBaseline:
    """Linear feature baseline of Duan et al. (2016), refit per batch, one regression per task.

    Features ``φ(s_t, t) = [s_t, s_t², t', t'², t'³, 1]`` with ``t' = t / time_scale`` (``t`` is
    the step index inside the episode). For each task ``k``, on its valid steps only, the weights
    solve the ridge system ``(ΦᵀΦ + c_k I) w_k = Φᵀ R`` in float64 via Cholesky. ``c_k`` starts at
    ``reg_coeff``; if the factorization fails or the weights are not finite, ``c_k`` is raised
    ×10 (from 0 it jumps to ``min_fallback_reg``) and the task is solved again, at most
    ``max_retries`` times, after which a ``ValueError`` names the task.

    Attributes set by :meth:`fit`: ``weights`` ``(K, F)`` float64 and ``last_reg`` ``(K,)``
    float64, the regularization finally used per task (for logging). Nothing else is kept.
    """

    def __init__(
        self,
        reg_coeff: float = 1e-5,
        time_scale: float = 100.0,
        max_retries: int = 10,
        min_fallback_reg: float = 1e-10,
    ) -> None:
        if reg_coeff < 0:
            raise ValueError(f"reg_coeff must be >= 0, got {reg_coeff}")
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if min_fallback_reg <= 0:
            raise ValueError(f"min_fallback_reg must be > 0, got {min_fallback_reg}")
        self.reg_coeff = float(reg_coeff)
        self.time_scale = float(time_scale)
        self.max_retries = int(max_retries)
        self.min_fallback_reg = float(min_fallback_reg)
        self.weights: Tensor | None = None
        self.last_reg: Tensor | None = None

    @staticmethod
    def num_features(obs_dim: int) -> int:
        """``F = 2 D + 4``."""
        return 2 * obs_dim + 4

    def features(self, obs: Tensor, masks: Tensor) -> Tensor:
        """``φ`` as a float64 ``(K, E, T, F)`` tensor, zero rows at masked steps."""
        if obs.dim() != 4 or obs.shape[:-1] != masks.shape:
            raise ValueError(
                f"obs must be (K, E, T, D) matching masks (K, E, T); "
                f"got {tuple(obs.shape)} and {tuple(masks.shape)}"
            )
        valid = (masks > 0).unsqueeze(-1)
        o = _masked(obs.to(torch.float64), valid)
        steps = torch.arange(obs.shape[2], dtype=torch.float64, device=obs.device)
        t = (steps / self.time_scale).expand(obs.shape[:-1]).unsqueeze(-1)
        phi = torch.cat([o, o * o, t, t * t, t * t * t, torch.ones_like(t)], dim=-1)
        return phi * valid.to(phi.dtype)

    def fit(self, obs: Tensor, returns: Tensor, masks: Tensor) -> LinearFeatureBaseline:
        """Fit one ridge regression of ``returns`` on ``φ`` per task (vectorized over K)."""
        _check_same_shape("returns", returns, masks)
        phi = self.features(obs, masks)
        k, e, t, f = phi.shape
        phi = phi.reshape(k, e * t, f)
        target = _masked(returns.to(torch.float64), masks > 0).reshape(k, e * t, 1)
        gram = phi.mT @ phi  # (K, F, F)
        rhs = phi.mT @ target  # (K, F, 1)
        eye = torch.eye(f, dtype=torch.float64, device=phi.device)

        reg = torch.full((k,), self.reg_coeff, dtype=torch.float64, device=phi.device)
        weights = torch.zeros(k, f, 1, dtype=torch.float64, device=phi.device)
        pending = torch.ones(k, dtype=torch.bool, device=phi.device)
        for attempt in range(self.max_retries + 1):
            idx = pending.nonzero().squeeze(1)
            chol, info = torch.linalg.cholesky_ex(gram[idx] + reg[idx, None, None] * eye)
            w = torch.cholesky_solve(rhs[idx], chol)
            ok = (info == 0) & torch.isfinite(w).all(dim=-1).all(dim=-1)
            weights[idx[ok]] = w[ok]
            pending[idx[ok]] = False
            if not bool(pending.any()):
                break
            if attempt < self.max_retries:
                bad = idx[~ok]
                reg[bad] = torch.clamp(reg[bad] * 10.0, min=self.min_fallback_reg)
        if bool(pending.any()):
            failed = pending.nonzero().squeeze(1).tolist()
            raise ValueError(
                f"LinearFeatureBaseline: ridge solve failed for task index(es) {failed} after "
                f"{self.max_retries} retries (last reg {reg[pending].tolist()}); "
                "check the observations and returns for NaN/inf"
            )
        self.weights = weights.squeeze(-1)
        self.last_reg = reg
        return self

    def predict(self, obs: Tensor, masks: Tensor) -> Tensor:
        """Values ``V_t = φ(s_t, t) · w_k`` as ``(K, E, T)`` in ``obs.dtype``, 0 at masked steps."""
        if self.weights is None:
            raise RuntimeError("LinearFeatureBaseline.predict called before fit")
        phi = self.features(obs, masks)
        if phi.shape[0] != self.weights.shape[0] or phi.shape[-1] != self.weights.shape[-1]:
            raise ValueError(
                f"fitted for (K, F) = {tuple(self.weights.shape)}, got K={phi.shape[0]}, "
                f"F={phi.shape[-1]}"
            )
        values = torch.einsum("ketf,kf->ket", phi, self.weights.to(phi.device))
        out_dtype = obs.dtype if obs.is_floating_point() else torch.get_default_dtype()
        return values.to(out_dtype)

    def fit_predict(self, obs: Tensor, returns: Tensor, masks: Tensor) -> Tensor:
        """:meth:`fit` then :meth:`predict` on the same batch."""
        return self.fit(obs, returns, masks).predict(obs, masks)


def step_weights(masks: Tensor, averaging: str = "per_step") -> Tensor:
    """Weight of each step in its task's averages, ``(K, E, T)``; each task's weights sum to 1.

    ``per_step``: ``w = m / N_k`` with ``N_k`` the number of valid steps of task ``k`` (every
    step counts the same). ``per_episode``: ``w = m / (E_k · L_e)``, the mean over each
    episode's ``L_e`` valid steps, then over the task's ``E_k`` non-empty episodes (as
    pytorch-maml-rl's ``weighted_mean``): an episode that reached its goal early weighs as much
    as one that ran to the horizon. A task without valid steps gets zero weights.
    """
    if averaging not in AVERAGING:
        raise ValueError(f"averaging {averaging!r}: must be one of {', '.join(AVERAGING)}")
    if masks.dim() != 3:
        raise ValueError(f"masks must be (K, E, T), got shape {tuple(masks.shape)}")
    m = (masks > 0).to(masks.dtype if masks.is_floating_point() else torch.float32)
    if averaging == "per_step":
        return m / m.sum(dim=(1, 2), keepdim=True).clamp(min=1.0)
    lengths = m.sum(dim=2, keepdim=True)  # (K, E, 1)
    episodes = (lengths > 0).to(m.dtype).sum(dim=1, keepdim=True).clamp(min=1.0)
    return m / (lengths.clamp(min=1.0) * episodes)


def normalize_advantages(
    advantages: Tensor, masks: Tensor, eps: float = 1e-8, weights: Tensor | None = None
) -> Tensor:
    """Per task ``k``: ``(A − μ_k) / (σ_k + eps)`` over that task's valid steps, 0 elsewhere.

    ``μ_k = Σ w A`` and ``σ_k² = Σ w (A − μ_k)²`` with the step weights ``w`` of the task
    (:func:`step_weights`; default ``per_step``, i.e. the plain mean and population standard
    deviation over the valid steps, all leading dims after the first pooled). A task without
    valid steps gives 0.
    """
    _check_same_shape("advantages", advantages, masks)
    if advantages.dim() < 2:
        raise ValueError("advantages must be (K, ..., T)")
    valid = masks > 0
    a = _masked(advantages, valid)
    m = valid.to(a.dtype)
    dims = tuple(range(1, a.dim()))
    if weights is None:
        w = m / m.sum(dim=dims, keepdim=True).clamp(min=1.0)
    else:
        _check_same_shape("weights", weights, masks)
        w = _masked(weights.to(a.dtype), valid)
    mean = (w * a).sum(dim=dims, keepdim=True)
    centered = (a - mean) * m
    std = torch.sqrt((w * centered * centered).sum(dim=dims, keepdim=True))
    return centered / (std + eps)


def compute_advantages(
    obs: Tensor,
    rewards: Tensor,
    masks: Tensor,
    gamma: float,
    lam: float,
    baseline: LinearFeatureBaseline | None,
    normalize: bool,
    weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Returns ``(advantages, returns)``, both ``(K, E, T)`` and detached from autograd.

    ``returns = discounted_returns(rewards, masks, γ)``; ``V`` = ``baseline`` refit per task on
    those returns (0 when ``baseline`` is None); ``advantages = GAE(γ, λ)`` with ``V``, then
    optionally :func:`normalize_advantages` per task (with the step ``weights``, if given).
    """
    with torch.no_grad():
        obs, rewards, masks = obs.detach(), rewards.detach(), masks.detach()
        returns = discounted_returns(rewards, masks, gamma)
        if baseline is None:
            values = torch.zeros_like(returns)
        else:
            values = baseline.fit_predict(obs, returns, masks).to(returns.dtype)
        advantages = gae_advantages(rewards, values, masks, gamma, lam)
        if normalize:
            advantages = normalize_advantages(advantages, masks, weights=weights)
    return advantages, returns
