"""Regularized Newton-Raphson inversion (RNRI; Samuel, Meiri et al., arXiv 2312.12540 v2-v4, ICLR 2025 "GNRI").

Two updates per inversion step (docs/methods.md §4):
- `newton` (default): the Anderson fixed-point phase of §3, then, where it ends above a trigger, Newton-Krylov
  iterations on the vector residual R(y) = y − T(y) (Knoll & Keyes 2004): finite-difference Jacobian-vector
  products, restarted GMRES (Saad & Schultz 1986), a backtracking line search on ‖R‖², each sample's
  smallest-residual iterate kept, and Levenberg-Marquardt damping λ where the step is ill-posed.
- `paper`: the published scalar objective F(y) = ‖y − T(y)‖₁ + λ·G(y), G the Gaussian negative log-likelihood of the
  noising step, by the per-coordinate Newton-Raphson update y_i ← y_i − F(y) / (numel · (∂F/∂y_i + η·sgn ∂F/∂y_i)).
"""
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Optional

import torch

from .core import (
    EULER,
    NOT_ON_NODE,
    Callback,
    CountingDenoiser,
    Denoiser,
    InputScale,
    InversionResult,
    ModelGradient,
    Noising,
    Stepping,
    StepProblem,
    StepRule,
    StepWalk,
    Sweeps,
    ascending_steps,
    euler_rule,
    invert_by_steps,
    keep_best,
    notify,
    rms,
    sample,
    step_events,
    validate_schedule,
    vp_input_scale,
)
from .fixed_point import FixedPointOptions, anderson_step, fixed_point_solve

GRADIENTS = ("autograd", "jacobian-free")
UPDATES = ("newton", "paper")


@dataclass(frozen=True)
class RNRIOptions:
    """RNRI Invert's options. The first four are the node's widgets (its schema, bench/ and the tests read these
    defaults); the rest tune the newton update and are not on the node."""
    update: str = "newton"
    """newton: FixedPoint's Anderson phase, then Newton-Krylov where it stalls; paper: the published update."""
    iterations: int = 2
    """newton: Newton-Krylov iterations per stalled step; paper: Newton iterations (evaluations) per step."""
    regularization: float = 0.0
    """λ. newton: Levenberg-Marquardt damping of the Newton correction at ill-posed steps; paper: the weight of the
    noising step's prior (the authors use 0.1). Default 0: newton's damping measured no closer on any latent of the
    demo model (and no editability gained: bench/results/editing.md), and 0.1 ended above FixedPoint on one
    (docs/methods.md §4)."""
    gradient: str = "jacobian-free"
    """paper only: ∂T/∂y taken as 0 (jacobian-free) or by a vector-Jacobian product (autograd)."""
    damping: float = field(default=0.1, metadata=NOT_ON_NODE)
    """paper: η in the per-coordinate update's denominator."""
    max_iterations: int = field(default=FixedPointOptions.max_iterations, metadata=NOT_ON_NODE)
    """newton: most evaluations of the Anderson phase per step (FixedPoint's default)."""
    tolerance: float = field(default=FixedPointOptions.tolerance, metadata=NOT_ON_NODE)
    """newton: the residual the Anderson phase and Newton-Krylov aim for (FixedPoint's default)."""
    trigger: float = field(default=1.0, metadata=NOT_ON_NODE)
    """newton: Newton-Krylov runs where the Anderson phase ends above trigger·tolerance."""
    krylov: int = field(default=5, metadata=NOT_ON_NODE)
    """newton: Krylov vectors (Jacobian-vector products) per GMRES cycle."""
    restarts: int = field(default=1, metadata=NOT_ON_NODE)
    """newton: GMRES cycles per Newton iteration."""
    line_search: int = field(default=3, metadata=NOT_ON_NODE)
    """newton: most backtracking evaluations per Newton iteration."""
    epsilon: Optional[float] = field(default=None, metadata=NOT_ON_NODE)
    """newton: the finite-difference step's relative size (None: √ of the dtype's machine epsilon)."""
    warm_start: Optional[bool] = field(default=None, metadata=NOT_ON_NODE)
    """As FixedPoint's; None: on for newton, off for paper."""
    sweeps: Optional[int] = field(default=None, metadata=NOT_ON_NODE)
    """newton: most sweeps over a multistep sampler's stages; None: the sampler's own (samplers.SAMPLER_SWEEPS)."""
    beside_fixed_point: bool = field(default=True, metadata=NOT_ON_NODE)
    """newton, samplers without stages: walk FixedPoint's own trajectory beside Newton's and keep, per latent, the seed
    that regenerates closer (`newton_invert`): never above FixedPoint's round trip, for FixedPoint's solves above the
    first step that Newton changes and one sampling pass per seed."""

    def __post_init__(self):
        if self.update not in UPDATES:
            raise ValueError(f"update: expected one of {UPDATES}, got {self.update!r}")
        if self.gradient not in GRADIENTS:
            raise ValueError(f"gradient: expected one of {GRADIENTS}, got {self.gradient!r}")
        if self.iterations < 1:
            raise ValueError(f"iterations: expected at least 1, got {self.iterations}")
        if self.regularization < 0:
            raise ValueError(f"regularization: expected λ ≥ 0, got {self.regularization}")
        if self.damping <= 0:
            raise ValueError(f"damping: expected η > 0, got {self.damping}")
        if self.update == "newton":
            for name in ("max_iterations", "krylov", "restarts", "line_search"):
                if getattr(self, name) < 1:
                    raise ValueError(f"{name}: expected at least 1, got {getattr(self, name)}")

    @property
    def model_gradient(self) -> ModelGradient:
        """The paper update with the autograd gradient differentiates through the model."""
        return ModelGradient.VJP if self.update == "paper" and self.gradient == "autograd" else ModelGradient.NONE

Prior = Callable[[torch.Tensor, float, float], tuple]
"""prior(x_lo, σ_lo, σ_hi) -> (mean, variance) of the noising step q(x_hi | x_lo)."""


def ve_transition_prior(x_lo: torch.Tensor, sigma_lo: float, sigma_hi: float) -> tuple:
    """q(x_hi | x_lo) = N(x_lo, (σ_hi² − σ_lo²)·I) in σ space: the paper's one-step transition (docs/methods.md §4)."""
    return x_lo, sigma_hi ** 2 - sigma_lo ** 2


def flow_transition_prior(x_lo: torch.Tensor, sigma_lo: float, sigma_hi: float) -> tuple:
    """Rectified flow: mean ((1−σ_hi)/(1−σ_lo))·x_lo, variance σ_hi² − ((1−σ_hi)/(1−σ_lo))²·σ_lo²
    (docs/methods.md §4)."""
    shrink = (1.0 - sigma_hi) / (1.0 - sigma_lo)
    return shrink * x_lo, sigma_hi ** 2 - (shrink * sigma_lo) ** 2


TRANSITION_PRIORS = {Noising.VE: ve_transition_prior, Noising.FLOW: flow_transition_prior}
"""The noising step's prior for each way a family noises."""


def rnri_objective(y: torch.Tensor, mapped: torch.Tensor, mean: torch.Tensor, variance: float,
                   regularization: float) -> torch.Tensor:
    """Per-sample F(y) = ‖y − T(y)‖₁ + λ·½‖y − μ‖²/s² (RNRI's regularized scalar residual)."""
    residual = (y - mapped).flatten(1).abs().sum(1)
    prior = 0.5 * (y - mean).flatten(1).pow(2).sum(1) / variance
    return residual + regularization * prior


def jacobian_free_gradient(y, mapped, mean, variance, regularization) -> torch.Tensor:
    """∂F/∂y with ∂T/∂y taken as 0: sgn(y − T(y)) + λ·(y − μ)/s² (what the authors' code does, no backward pass)."""
    return torch.sign(y - mapped) + regularization * (y - mean) / variance


def newton_step(y: torch.Tensor, objective: torch.Tensor, gradient: torch.Tensor, damping: float) -> torch.Tensor:
    """y_i − F/(numel·(g_i + η·sgn g_i)): the paper's per-coordinate update, finite where g_i vanishes."""
    numel = y[0].numel()
    sign = torch.where(gradient >= 0, 1.0, -1.0)
    scale = (objective / numel).view(-1, *[1] * (y.ndim - 1))
    return y - scale / (gradient + damping * sign)


def objective_and_gradient(T, y: torch.Tensor, mean: torch.Tensor, variance: float, regularization: float,
                           gradient: str) -> tuple:
    """(T(y), per-sample F(y), ∂F/∂y): by one vector-Jacobian product through T, or with ∂T/∂y taken as 0."""
    if gradient == "jacobian-free":
        mapped = T(y)
        return (mapped, rnri_objective(y, mapped, mean, variance, regularization),
                jacobian_free_gradient(y, mapped, mean, variance, regularization))
    # ComfyUI runs prompts under inference mode; the product needs y as a normal tensor that records a graph.
    with torch.inference_mode(False), torch.enable_grad():
        leaf = y.detach().clone().requires_grad_(True)
        mapped = T(leaf)
        objective = rnri_objective(leaf, mapped, mean, variance, regularization)
        (grad,) = torch.autograd.grad(objective.sum(), leaf)
    return mapped.detach(), objective.detach(), grad


def rnri_solve(problem: StepProblem, on_iteration: Callable[[int, float], None], iterations: int,
               regularization: float, gradient: str, damping: float, prior: Prior) -> tuple:
    """Newton-Raphson on F from y0, monotone: a trial that does not lower a sample's F is rejected and that sample's
    step from its accepted iterate halved (Armijo-style backtracking at no extra evaluation: the accepted iterate's
    gradient is kept), doubled back toward the full step after each acceptance. Returns T(y) of each sample's
    best-objective iterate and the residual trace, one entry per evaluation."""
    mean, variance = prior(problem.x_lo, problem.sigma_lo, problem.sigma_hi)
    trial, best, best_objective, trace = problem.y0, None, None, []
    shape = (-1, *[1] * (trial.ndim - 1))
    y = objective = grad = step = None
    scale = torch.ones(trial.shape[0], dtype=trial.dtype, device=trial.device)
    for iteration in range(iterations):
        last = iteration + 1 == iterations  # its gradient would go unused: skip the backward pass
        mapped, trial_objective, trial_grad = objective_and_gradient(problem.T, trial, mean, variance, regularization,
                                                                     "jacobian-free" if last else gradient)
        best, best_objective = keep_best(best, best_objective, mapped, trial_objective)
        trace.append(float(rms(mapped - trial).max()))
        on_iteration(iteration, trace[-1])
        if last:
            break
        if y is None:
            y, objective, grad = trial, trial_objective, trial_grad
            accept = torch.ones_like(scale, dtype=torch.bool)
        else:  # NaN compares false: a non-finite trial is rejected like one that raises F
            accept = trial_objective < objective
            y = torch.where(accept.view(shape), trial, y)
            objective = torch.where(accept, trial_objective, objective)
            grad = torch.where(accept.view(shape), trial_grad, grad)
        full = newton_step(y, objective, grad, damping) - y
        step = full if step is None else torch.where(accept.view(shape), full, step)
        scale = torch.where(accept, (2 * scale).clamp(max=1.0), scale / 2)
        trial = y + scale.view(shape) * step
    return best, trace


def finite_difference_jvp(T, y: torch.Tensor, mapped: torch.Tensor, direction: torch.Tensor,
                          epsilon: float) -> torch.Tensor:
    """J_R·v ≈ v − (T(y + h·v) − T(y))/h for R(y) = y − T(y), one evaluation for the batch (Knoll & Keyes 2004,
    §2.2); v: (batch, numel) float64 of unit (or zero) rows, h = ε·(1 + RMS(y))·√numel per sample."""
    h = epsilon * (1.0 + rms(y).double()) * direction.shape[1] ** 0.5
    shifted = T(y + (h[:, None] * direction).to(y.dtype).view_as(y))
    return direction - (shifted - mapped).flatten(1).double() / h[:, None]


def projected_solve(hessenberg: torch.Tensor, beta: torch.Tensor, kappa: torch.Tensor, offset: torch.Tensor,
                    rcond: float = 1e-8) -> tuple:
    """z = argmin ‖H̄z − β·e₁‖² + κ‖z + q‖² per sample, by the SVD of the (k+1)×k Hessenberg H̄ (Tikhonov on the
    Krylov projection; with κ = 0 the GMRES least-squares, singular values under rcond·s_max dropped).

    Returns z, the projected residual ‖H̄z − β·e₁‖ and H̄'s condition number s_max/s_min."""
    u, s, vh = torch.linalg.svd(hessenberg, full_matrices=False)
    ug = beta[:, None] * u[:, 0, :]
    wq = (vh @ offset.unsqueeze(2)).squeeze(2)
    k = kappa[:, None]
    denominator = s ** 2 + k
    keep = denominator > (rcond * s[:, :1]) ** 2
    coefficients = torch.where(keep, (s * ug - k * wq) / torch.where(keep, denominator, 1.0), 0.0)
    z = (vh.transpose(1, 2) @ coefficients.unsqueeze(2)).squeeze(2)
    target = torch.zeros_like(hessenberg[:, :, 0])
    target[:, 0] = beta
    projected = ((hessenberg @ z.unsqueeze(2)).squeeze(2) - target).norm(dim=1)
    return z, projected, s[:, 0] / s[:, -1].clamp_min(1e-300)


def unit_rows(vectors: torch.Tensor, norms: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Rows divided by their norms; a row whose norm is under 1e-12·scale (a converged or broken-down sample) is 0."""
    ok = norms > 1e-12 * scale
    return torch.where(ok[:, None], vectors / torch.where(ok, norms, 1.0)[:, None], 0.0)


def gmres(matvec: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, *, krylov: int, restarts: int,
          forcing: torch.Tensor, kappa: torch.Tensor, offset: torch.Tensor, flagged: torch.Tensor,
          ill_conditioned: float, step_limit: torch.Tensor) -> tuple:
    """Restarted GMRES(m) (Saad & Schultz 1986) for J·δ = rhs per sample ((batch, numel) float64), modified
    Gram-Schmidt Arnoldi. A sample already flagged ill-posed, or whose projection reports near-singularity (condition
    number over ill_conditioned, or a correction longer than step_limit), gets the Tikhonov term κ‖δ + offset‖²
    (docs/methods.md §4). Stops once every sample's residual is under forcing·‖rhs‖ (inexact Newton; Dembo,
    Eisenstat & Steihaug 1982).

    Returns δ and the per-sample flag "the Tikhonov term was applied"."""
    batch = rhs.shape[0]
    scale = rhs.norm(dim=1)
    goal = forcing * scale
    delta, residual = torch.zeros_like(rhs), rhs
    regularized = flagged & (kappa > 0)
    for _ in range(restarts):
        beta = residual.norm(dim=1)
        if bool((beta <= goal).all()):
            break
        basis = [unit_rows(residual, beta, scale)]
        hessenberg = rhs.new_zeros(batch, krylov + 1, krylov)
        for j in range(krylov):
            w = matvec(basis[j])
            for i, v in enumerate(basis):
                hessenberg[:, i, j] = (v * w).sum(1)
                w = w - hessenberg[:, i, j, None] * v
            hessenberg[:, j + 1, j] = w.norm(dim=1)
            basis.append(unit_rows(w, hessenberg[:, j + 1, j], scale))
            space = torch.stack(basis[:j + 1], 2)
            projected_offset = (space.transpose(1, 2) @ (offset + delta).unsqueeze(2)).squeeze(2)
            h = hessenberg[:, :j + 2, :j + 1]
            z, _, condition = projected_solve(h, beta, torch.zeros_like(kappa), projected_offset)
            singular = (condition > ill_conditioned) | ((delta + (space @ z.unsqueeze(2)).squeeze(2)).norm(dim=1)
                                                        > step_limit)
            weight = torch.where(regularized | singular, kappa, 0.0)
            z, projected, _ = projected_solve(h, beta, weight, projected_offset)
            if bool((projected <= goal).all()):
                break
        regularized = regularized | (weight > 0)
        delta = delta + (space @ z.unsqueeze(2)).squeeze(2)
        left = -(h @ z.unsqueeze(2)).squeeze(2)
        left[:, 0] += beta
        residual = (torch.stack(basis[:j + 2], 2) @ left.unsqueeze(2)).squeeze(2)
    return delta, regularized


def backtrack(evaluate: Callable, y: torch.Tensor, mapped: torch.Tensor, squared: torch.Tensor, delta: torch.Tensor,
              trials: int, best: tuple) -> tuple:
    """Backtracking (Armijo) line search on ‖R‖² per sample (Nocedal & Wright, Alg. 3.1): a trial that raises the
    residual is never accepted. Returns the next (y, T(y), ‖R‖²) and the best (iterates, ‖R‖²) seen so far."""
    shape = (-1, *[1] * (y.ndim - 1))
    step = torch.ones_like(squared)
    accepted = torch.zeros_like(squared, dtype=torch.bool)
    next_y, next_mapped, next_squared = y, mapped, squared
    for _ in range(trials):
        candidate = torch.where(accepted.view(shape), next_y, y + step.to(y.dtype).view(shape) * delta)
        candidate_mapped = evaluate(candidate)
        candidate_squared = squared_residual(candidate, candidate_mapped)
        best = keep_best(*best, torch.stack([candidate_mapped, candidate], 1), candidate_squared)
        newly = ~accepted & (candidate_squared <= (1.0 - 1e-4 * step) * squared)
        next_y = torch.where(newly.view(shape), candidate, next_y)
        next_mapped = torch.where(newly.view(shape), candidate_mapped, next_mapped)
        next_squared = torch.where(newly, candidate_squared, next_squared)
        accepted = accepted | newly
        if bool(accepted.all()):
            break
        step = torch.where(accepted, step, step / 2)
    return (next_y, next_mapped, next_squared), best


def squared_residual(point: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    """‖R(y)‖² = ‖y − T(y)‖² per sample, float64: what every trial is accepted and the best iterate kept by."""
    return (point - mapped).flatten(1).double().pow(2).sum(1)


def newton_krylov_solve(problem: StepProblem, on_iteration: Callable[[int, float], None], options: "RNRIOptions",
                        prior: Prior) -> tuple:
    """One step of RNRI newton (`newton_krylov_phases`): T(y) of each sample's smallest-residual iterate and the
    residual trace."""
    return newton_krylov_phases(problem, on_iteration, options, prior)[0]


def newton_krylov_phases(problem: StepProblem, on_iteration: Callable[[int, float], None], options: "RNRIOptions",
                         prior: Prior, *, ill_conditioned: float = 1e4, stall: float = 0.9) -> tuple:
    """Anderson fixed-point phase (docs/methods.md §3), then where it ends above trigger·tolerance `iterations`
    Newton-Krylov iterations on R(y) = y − T(y) (Knoll & Keyes 2004; GMRES, Saad & Schultz 1986) with a backtracking
    line search on ‖R‖² and a Levenberg-Marquardt damping λ/s²·‖δ‖² where the step is ill-posed (§4).

    Returns ((T(y) of each sample's smallest-residual iterate, the Anderson phase's included, so never worse than that
    phase; the residual trace, one entry per evaluation, a Jacobian-vector product's entry the residual of the iterate
    it is at), (the Anderson phase's own result and trace: FixedPoint's solve of this step))."""
    o = options
    image, trace, y, residual = fixed_point_solve(problem, on_iteration, o.max_iterations, o.tolerance, "anderson",
                                                  keep_iterate=True)
    anderson = (image, list(trace))
    goal = max(o.trigger * o.tolerance, problem.forcing * trace[0])  # an inexact solve inside a sweep stops sooner
    if float(residual.max()) <= goal:
        return (image, trace), anderson
    _, variance = prior(problem.x_lo, problem.sigma_lo, problem.sigma_hi)  # s² sets the scale of λ and of a step
    kappa = torch.full((y.shape[0],), o.regularization / variance, dtype=torch.float64, device=y.device)
    epsilon = o.epsilon if o.epsilon is not None else torch.finfo(y.dtype).eps ** 0.5

    def evaluate(point: torch.Tensor, shown: Optional[torch.Tensor] = None) -> torch.Tensor:
        mapped = problem.T(point)
        trace.append(float((rms(mapped - point) if shown is None else shown).max()))
        on_iteration(len(trace) - 1, trace[-1])
        return mapped

    no_offset = torch.zeros_like(y.flatten(1), dtype=torch.float64)  # λ damps toward the current iterate (LM proper)
    mapped, squared = image, squared_residual(y, image)
    best = (torch.stack([mapped, y], 1), squared)
    initial = squared.sqrt()
    ill = torch.zeros_like(kappa, dtype=torch.bool)  # where the step is ill-posed: λ applies from then on
    step_limit = torch.full_like(kappa, (variance * y[0].numel()) ** 0.5)  # a whole noising step's noise
    for _ in range(o.iterations):
        current = rms(mapped - y)
        if bool((current <= max(o.tolerance, problem.forcing * trace[0])).all()):
            break
        forcing = (squared.sqrt() / initial.clamp_min(1e-300)).clamp(max=0.1)
        delta, regularized = gmres(
            lambda v, y=y, mapped=mapped, current=current: finite_difference_jvp(
                lambda point: evaluate(point, current), y, mapped, v, epsilon),
            -(y - mapped).flatten(1).double(), krylov=o.krylov, restarts=o.restarts, forcing=forcing, kappa=kappa,
            offset=no_offset, flagged=ill, ill_conditioned=ill_conditioned, step_limit=step_limit)
        ill = ill | regularized
        (next_y, next_mapped, next_squared), best = backtrack(evaluate, y, mapped, squared,
                                                              delta.to(y.dtype).view_as(y), o.line_search, best)
        # the residual stopped falling short of the tolerance: the step is ill-posed there
        ill = ill | ((next_squared > stall ** 2 * squared) & (rms(next_mapped - next_y) > o.tolerance))
        y, mapped, squared = next_y, next_mapped, next_squared
    return (best[0][:, 0], trace), anderson


FOLD_RATIO = 0.85
"""A step with c = (σ_hi − s)/σ_hi at or above this is likely a fold: J_R = (1 − c)·I + c·J_D is nearly singular where
J_D has an eigenvalue near −(1 − c)/c (docs/methods.md §4)."""


def fold_ratio(sigmas: torch.Tensor, rule: StepRule = euler_rule) -> Optional[float]:
    """c = (σ_hi − s)/σ_hi of the first inversion step that lands above σ = 0 (s > 0); None if there is none. The
    step up from σ = 0 has c = 1 by construction (it solves D(y) = x_0) and is not counted."""
    values = sigmas.flatten().tolist()
    for sigma_lo, sigma_hi in zip(values[::-1][1:], values[::-1][2:]):
        s = rule(sigma_hi, sigma_lo)[2]
        if s > 0:
            return (sigma_hi - s) / sigma_hi
    return None


def closer_per_latent(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, stepping: Stepping,
                      walks: tuple, callback: Optional[Callback]) -> tuple:
    """Each walk's seed sampled back by the sampler `stepping` describes (one sampling pass each); per latent, True
    where the first walk's regeneration is at least as close to x0 as the second's (a non-finite one never is)."""
    steps = len(sigmas) - 1

    def at_the_top(event: dict) -> None:  # progress: the passes come after every step's solve
        notify(callback, **{**event, "step": steps - 1})

    errors = [rms(sample(denoiser, walk.trajectory[-1], sigmas, stepping.rule, stepping.noises, at_the_top) - x0)
              for walk in walks]
    return errors[0] <= errors[1]


def newton_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, options: RNRIOptions, *, prior: Prior,
                  input_scale: InputScale, callback: Optional[Callback], stepping: Stepping,
                  warm_start: bool) -> InversionResult:
    """RNRI newton step by step beside FixedPoint's own trajectory (docs/methods.md §4). Both walk up together while
    the Newton phase changes nothing: each step's Anderson phase is FixedPoint's solve. From the first step where it
    does, FixedPoint's walk goes on by its own solves (its evaluations counted); at the end, if the two seeds differ,
    each is sampled back once and every latent keeps the seed whose regeneration is closer. So RNRI's round trip is
    never above FixedPoint's at the same tolerance and cap (a per-step residual cannot promise it: a step's error
    passes up the trajectory with a gain that depends on where the steps below ended)."""
    o = options
    validate_schedule(sigmas)
    counter = CountingDenoiser(denoiser)
    steps = len(sigmas) - 1
    newton, fixed = StepWalk([x0]), None
    for index, sigma_lo, sigma_hi in ascending_steps(sigmas):
        on_iteration = step_events(callback, index, steps)
        problem = newton.problem(counter, index, sigma_lo, sigma_hi, stepping, steps, input_scale, warm_start)
        if fixed is not None:
            own = fixed.problem(counter, index, sigma_lo, sigma_hi, stepping, steps, input_scale, warm_start)
            fixed.take(own, *fixed_point_solve(own, on_iteration, o.max_iterations, o.tolerance, "anderson"))
        (x, trace), anderson = newton_krylov_phases(problem, on_iteration, o, prior)
        if fixed is None and not torch.equal(x, anderson[0]):
            fixed = newton.copy()
            fixed.take(problem, *anderson)
        newton.take(problem, x, trace)
    if fixed is None or torch.equal(newton.trajectory[-1], fixed.trajectory[-1]):
        return newton.result(counter.evaluations)
    keep = closer_per_latent(counter, x0, sigmas, stepping, (newton, fixed), callback)
    shape = (-1, *[1] * (x0.ndim - 1))
    trajectory = [torch.where(keep.view(shape), a, b) for a, b in zip(newton.trajectory, fixed.trajectory)]
    # the residual trace is the Newton walk's unless every latent kept FixedPoint's
    residuals = newton.residuals if bool(keep.any()) else fixed.residuals
    return StepWalk(trajectory, residuals).result(counter.evaluations)


def rnri_invert(denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, options: RNRIOptions = RNRIOptions(),
                *, prior: Prior = ve_transition_prior, input_scale: InputScale = vp_input_scale,
                callback: Optional[Callback] = None, stepping: Stepping = EULER) -> InversionResult:
    """Invert every step of the sampler `stepping` describes by RNRI (docs/methods.md §4): `newton`, the Anderson
    phase of FixedPoint (at most max_iterations evaluations, to tolerance) then `iterations` Newton-Krylov iterations
    where it ends above trigger·tolerance, λ a Levenberg-Marquardt damping at ill-posed steps, with FixedPoint's own
    trajectory beside it and per latent the seed that regenerates closer (`newton_invert`); or `paper`, the published
    per-coordinate update, `iterations` evaluations per step. A multistep sampler's stages in up to `sweeps` sweeps
    (docs/methods.md §14; paper: one; newton there without FixedPoint's trajectory beside it)."""
    o = options
    if o.update == "paper":
        solve = partial(rnri_solve, iterations=o.iterations, regularization=o.regularization, gradient=o.gradient,
                        damping=o.damping, prior=prior)
        return invert_by_steps(solve, denoiser, x0, sigmas, input_scale=input_scale, callback=callback,
                               stepping=stepping, warm_start=bool(o.warm_start))
    warm_start = True if o.warm_start is None else o.warm_start
    if stepping.stepper is None and o.beside_fixed_point:
        return newton_invert(denoiser, x0, sigmas, o, prior=prior, input_scale=input_scale, callback=callback,
                             stepping=stepping, warm_start=warm_start)
    solve = partial(newton_krylov_solve, options=o, prior=prior)
    return invert_by_steps(solve, denoiser, x0, sigmas, input_scale=input_scale, callback=callback, stepping=stepping,
                           warm_start=warm_start, sweeps=Sweeps(count=o.sweeps, tolerance=o.tolerance,
                                                                mix=anderson_step))
