"""Rectified-flow models' own inversion and editing methods, in ComfyUI's σ space (docs/methods.md §11-13).

A flow model noises as x_σ = (1 − σ)·x_0 + σ·n with σ ∈ [0, 1]; its velocity dx/dσ is the direction
d = (x − D(x, σ))/σ every other method uses. RF-Inversion (Rout et al., ICLR 2025) steers the ODE with the velocity
of a straight line to an anchor, FireFlow (Deng et al., ICML 2025) and RF-Solver (Wang et al. 2024) integrate it to
second order, FlowEdit (Kulikov et al., ICCV 2025) edits without inverting.
"""
from dataclasses import dataclass
from typing import Optional

import torch

from .core import (
    Callback,
    CountingDenoiser,
    Denoiser,
    InputScale,
    InversionResult,
    ascending_steps,
    euler_step,
    level_scale,
    notify,
    rms,
    to_d,
    validate_schedule,
    vp_input_scale,
)

FLOW_SOLVERS = ("fireflow", "rf_solver")


def check_eta(eta: float) -> None:
    """η is a convex weight between the model's denoised estimate and the reference (Rout et al. 2025)."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta: expected a pull strength in [0, 1] (0 = plain euler), got {eta}")


@dataclass(frozen=True)
class RFInversionOptions:
    """RF-Inversion Invert's options. These defaults are the node's: its schema, bench/ and the tests read them here."""
    gamma: float = 0.5
    """Controller strength of the inversion, in [0, 1]: 0 is plain Euler inversion, 1 ends on the target noise."""
    eta: float = 0.9
    """Strength of the sampler's pull toward the image on its steps start_step … stop_step − 1."""
    start_step: int = 0
    stop_step: int = 6

    def __post_init__(self):
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma: expected a controller strength in [0, 1], got {self.gamma}")
        check_eta(self.eta)


@dataclass(frozen=True)
class FlowSolverOptions:
    """FireFlow Invert's option (default the node's): which second-order solver inverts and samples."""
    solver: str = "fireflow"

    def __post_init__(self):
        if self.solver not in FLOW_SOLVERS:
            raise ValueError(f"solver: expected one of {', '.join(FLOW_SOLVERS)}, got {self.solver!r}")


@dataclass(frozen=True)
class FlowEditOptions:
    """FlowEdit's options. These defaults are the node's: its schema, bench/ and the tests read them here. The two cfgs
    are applied by the host's guider (one per prompt); the rest by flow_edit."""
    n_max: int = 16
    """How many of the schedule's last steps edit (capped at its steps)."""
    n_min: int = 0
    """The last n_min steps sample plainly with the target prompt."""
    n_avg: int = 1
    """Noises averaged per step."""
    source_cfg: float = 1.0
    target_cfg: float = 3.0


def line_velocity(x: torch.Tensor, sigma: float, anchor: torch.Tensor, sigma_anchor: float) -> torch.Tensor:
    """Velocity of the straight line through (σ, x) and (σ_anchor, anchor): RF-Inversion's conditional vector field
    (Rout et al. 2025: toward the target noise at σ = 1 when inverting, toward the reference image at σ = 0 when
    sampling)."""
    return (x - anchor) / (sigma - sigma_anchor)


def rf_inversion_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor,
                        options: RFInversionOptions = RFInversionOptions(), *,
                        target_noise: Optional[torch.Tensor] = None, input_scale: InputScale = vp_input_scale,
                        callback: Optional[Callback] = None) -> InversionResult:
    """RF-Inversion's controlled forward ODE (Rout et al. 2025, docs/methods.md §11): Euler steps up the schedule along
    d + γ·(u(x | n) − d), u the straight line's velocity to the target noise n at σ = 1.

    The velocity is evaluated where DDIM inversion evaluates it (the latent seen at σ_hi, never at σ = 0), so γ = 0 is
    exactly DDIM inversion; γ = 1 ends on n. Residuals: per step, the RMS size of the step (as DDIM's).
    """
    validate_schedule(sigmas)
    gamma = options.gamma
    if gamma and target_noise is None:
        raise ValueError("target_noise: RF-Inversion with gamma > 0 steers toward a target noise; none was given")
    if gamma and tuple(target_noise.shape) != tuple(x0.shape):
        raise ValueError(f"target_noise: expected the latent's shape {tuple(x0.shape)}, got "
                         f"{tuple(target_noise.shape)}")
    steps = len(sigmas) - 1
    progress = {"step": 0, "steps": steps, "iteration": 0, "residual": 0.0}
    counter = CountingDenoiser(denoiser, lambda: notify(callback, **progress))
    x, residuals = x0, []
    for index, sigma_lo, sigma_hi in ascending_steps(sigmas):
        progress["step"] = index
        seen = x * level_scale(input_scale, sigma_lo, sigma_hi)
        velocity = to_d(seen, sigma_hi, counter(seen, sigma_hi))
        if gamma:
            velocity = velocity + gamma * (line_velocity(x, sigma_lo, target_noise.to(x), 1.0) - velocity)
        x_hi = euler_step(x, velocity, sigma_lo, sigma_hi)
        residuals.append([float(rms(x_hi - seen).max())])
        x = x_hi
    return InversionResult(latent=x, residuals=residuals, evaluations=counter.evaluations)


def eta_schedule(steps: int, eta: float, start_step: int, stop_step: int) -> list:
    """η_i per sampling step: `eta` on steps start_step ≤ i < stop_step, 0 elsewhere (Rout et al.'s controller
    schedule)."""
    check_eta(eta)
    return [eta if start_step <= i < stop_step else 0.0 for i in range(steps)]


def rf_inversion_sample(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, reference: torch.Tensor,
                        etas: list, callback: Optional[Callback] = None) -> torch.Tensor:
    """RF-Inversion's controlled reverse ODE (Rout et al. 2025, docs/methods.md §11): Euler steps down along
    d + η_i·(u(x | y₀) − d), u the straight line's velocity to the reference y₀ at σ = 0.

    Since u(x | y₀) = (x − y₀)/σ, this is the Euler step with D replaced by (1 − η_i)·D + η_i·y₀; all η_i = 0 is
    ComfyUI's euler sampler exactly.
    """
    validate_schedule(sigmas)
    values, steps = sigmas.tolist(), len(sigmas) - 1
    if len(etas) != steps:
        raise ValueError(f"etas: expected one η per step ({steps}), got {len(etas)}")
    reference = reference.to(x)
    for i in range(steps):
        denoised = denoiser(x, values[i])
        if etas[i]:
            denoised = denoised + etas[i] * (reference - denoised)
        x = euler_step(x, to_d(x, values[i], denoised), values[i], values[i + 1])
        notify(callback, step=i, steps=steps, iteration=0, residual=0.0)
    return x


def midpoint_step(denoiser: Denoiser, x: torch.Tensor, sigma_from: float, sigma_to: float,
                  v_start: torch.Tensor) -> tuple:
    """Explicit midpoint step x + Δσ·v(x + Δσ/2·v_start, σ + Δσ/2): RF-Solver's second-order Taylor step with its
    derivative by finite difference (Wang et al. 2024) and FireFlow's step (Deng et al. 2025; docs/methods.md §12).
    Returns (x at σ_to, the midpoint velocity)."""
    sigma_mid = 0.5 * (sigma_from + sigma_to)
    x_mid = euler_step(x, v_start, sigma_from, sigma_mid)
    v_mid = to_d(x_mid, sigma_mid, denoiser(x_mid, sigma_mid))
    return euler_step(x, v_mid, sigma_from, sigma_to), v_mid


def flow_solver_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor,
                       options: FlowSolverOptions = FlowSolverOptions(), *, input_scale: InputScale = vp_input_scale,
                       callback: Optional[Callback] = None) -> InversionResult:
    """FireFlow or RF-Solver inversion: midpoint steps up the schedule (docs/methods.md §12).

    RF-Solver evaluates the start velocity of every step (2 evaluations per step); FireFlow reuses the previous
    step's midpoint velocity as it (still second order: it differs from v(x, σ) by O(Δσ)), 1 per step plus one.
    The first start velocity is taken at the first midpoint's σ, since d is undefined at σ = 0. Residuals: per step,
    the RMS of the midpoint correction Δσ·(v_mid − v_start), the embedded estimate of a first-order step's error
    (it overstates what this second-order step loses).
    """
    validate_schedule(sigmas)
    solver = options.solver
    steps = len(sigmas) - 1
    progress = {"step": 0, "steps": steps, "iteration": 0, "residual": 0.0}
    counter = CountingDenoiser(denoiser, lambda: notify(callback, **progress))
    x, residuals, reused = x0, [], None
    for index, sigma_lo, sigma_hi in ascending_steps(sigmas):
        progress["step"] = index
        if reused is not None and solver == "fireflow":
            v_start = reused
        else:
            sigma_start = sigma_lo if sigma_lo > 0 else 0.5 * sigma_hi
            seen = x * level_scale(input_scale, sigma_lo, sigma_start)
            v_start = to_d(seen, sigma_start, counter(seen, sigma_start))
        x_hi, reused = midpoint_step(counter, x, sigma_lo, sigma_hi, v_start)
        residuals.append([float(rms((sigma_hi - sigma_lo) * (reused - v_start)).max())])
        x = x_hi
    return InversionResult(latent=x, residuals=residuals, evaluations=counter.evaluations)


def flow_solver_sample(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                       options: FlowSolverOptions = FlowSolverOptions(), *,
                       callback: Optional[Callback] = None) -> torch.Tensor:
    """FireFlow or RF-Solver sampling: midpoint steps down the schedule, FireFlow reusing each midpoint velocity as
    the next step's start velocity (N + 1 evaluations for N steps; RF-Solver 2N)."""
    validate_schedule(sigmas)
    solver = options.solver
    values, steps = sigmas.tolist(), len(sigmas) - 1
    reused = None
    for i in range(steps):
        if reused is not None and solver == "fireflow":
            v_start = reused
        else:
            v_start = to_d(x, values[i], denoiser(x, values[i]))
        x, reused = midpoint_step(denoiser, x, values[i], values[i + 1], v_start)
        notify(callback, step=i, steps=steps, iteration=0, residual=0.0)
    return x


def noised(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """The flow model's forward noising (1 − σ)·x_0 + σ·n (ComfyUI's CONST noise_scaling)."""
    return (1.0 - sigma) * x0 + sigma * noise


def flow_edit(source: Denoiser, target: Denoiser, x_source: torch.Tensor, sigmas: torch.Tensor,
              options: FlowEditOptions = FlowEditOptions(), *, seed: int = 0, mask: Optional[torch.Tensor] = None,
              callback: Optional[Callback] = None) -> InversionResult:
    """FlowEdit (Kulikov et al. 2025; docs/methods.md §13): from the source latent, integrate the difference of the
    target- and source-conditioned velocities on noised copies of it over the last n_max steps of the schedule,
    averaged over n_avg noises; its last n_min steps sample plainly with the target prompt.

    `sigmas` is the full schedule (σ_max … 0); the noises come from a CPU generator seeded with `seed`. With a `mask`
    (1 = edit, 0 = keep; broadcastable to the latent) every step is blended back to the source's own trajectory
    outside it, as ComfyUI's masked sampling does: the source latent itself while editing, its noised copy while
    sampling, so outside the mask the result is the source. Returns the edited latent (model space) as `latent`, per
    edited step the RMS of that step's move as `residuals`.
    """
    validate_schedule(sigmas)
    steps = len(sigmas) - 1
    n_max, n_min, n_avg = options.n_max, options.n_min, options.n_avg
    if not 1 <= n_max <= steps:
        raise ValueError(f"n_max: expected 1 … {steps} (the schedule's steps), got {n_max}")
    if not 0 <= n_min < n_max:
        raise ValueError(f"n_min: expected 0 ≤ n_min < n_max = {n_max}, got {n_min}")
    if n_avg < 1:
        raise ValueError(f"n_avg: expected at least 1, got {n_avg}")
    progress = {"step": 0, "steps": n_max, "iteration": 0, "residual": 0.0}
    counted_source = CountingDenoiser(source, lambda: notify(callback, **progress))
    counted_target = CountingDenoiser(target, lambda: notify(callback, **progress))
    generator = torch.Generator().manual_seed(seed)

    def fresh_noise() -> torch.Tensor:
        return torch.randn(x_source.shape, generator=generator).to(x_source)

    def keep_outside(moved: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        return moved if mask is None else torch.lerp(kept, moved, mask.to(moved))

    values, edited, residuals, sampling = sigmas.tolist(), x_source, [], None
    for i in range(steps - n_max, steps):
        sigma, sigma_next = values[i], values[i + 1]
        progress["step"] = i - (steps - n_max)
        if steps - i > n_min:
            delta = torch.zeros_like(x_source)
            for _ in range(n_avg):
                z_source = noised(x_source, fresh_noise(), sigma)
                z_target = edited + z_source - x_source
                delta += (to_d(z_target, sigma, counted_target(z_target, sigma))
                          - to_d(z_source, sigma, counted_source(z_source, sigma))) / n_avg
            moved = keep_outside(euler_step(edited, delta, sigma, sigma_next), x_source)
            residuals.append([float(rms(moved - edited).max())])
            edited = moved
        else:
            if sampling is None:
                sampling_noise = fresh_noise()
                sampling = edited + noised(x_source, sampling_noise, sigma) - x_source
            moved = euler_step(sampling, to_d(sampling, sigma, counted_target(sampling, sigma)), sigma, sigma_next)
            moved = keep_outside(moved, noised(x_source, sampling_noise, sigma_next))
            residuals.append([float(rms(moved - sampling).max())])
            sampling = moved
    result = edited if sampling is None else sampling
    return InversionResult(latent=result, residuals=residuals,
                           evaluations=counted_source.evaluations + counted_target.evaluations)
