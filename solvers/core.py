"""The one equation behind every method: the Euler (= DDIM) step in ComfyUI's sigma space and the
implicit equation that inverts it (docs/architecture.md §3, docs/methods.md §1).

A denoiser is any callable D(x, sigma) -> x0-estimate for a batched latent x and a scalar sigma,
with classifier-free guidance already applied. Nothing here imports ComfyUI.
"""
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Protocol

import torch


class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor: ...


InputScale = Callable[[float], float]
"""c_in(sigma): the factor by which the model sees a latent at noise level sigma."""

Callback = Callable[[dict], None]
"""Called after every model evaluation with {'step', 'steps', 'iteration', 'residual'}; may raise to stop."""


class InversionMethod(Protocol):
    """The one form of every inverter once its options are bound: the host calls it with ComfyUI's guided
    denoiser, the image latent (model space) and the σ schedule (descending, ending at 0)."""

    def __call__(self, denoiser: "Denoiser", x0: torch.Tensor, sigmas: torch.Tensor, *, input_scale: InputScale,
                 callback: Optional[Callback]) -> "InversionResult": ...


def vp_input_scale(sigma: float) -> float:
    """c_in(σ) = 1/√(σ² + 1): what EPS and V-prediction models see (Karras et al. 2022, Table 1)."""
    return (sigma * sigma + 1.0) ** -0.5


def to_d(x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
    """Probability-flow ODE direction d = (x − D(x, σ))/σ (Karras et al. 2022, eq. 3; k-diffusion's argument order)."""
    return (x - denoised) / sigma


def euler_step(x: torch.Tensor, d: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
    """One Euler step x + (σ_to − σ_from)·d; the deterministic DDIM step in σ space (docs/methods.md §1)."""
    return x + (sigma_to - sigma_from) * d


StepRule = Callable[[float, float], tuple]
"""rule(σ_hi, σ_lo) -> (a, b, s): the sampler steps as x_lo = a·(x_hi + (s − σ_hi)·d(x_hi, σ_hi)) + b·n_i
(docs/methods.md §5)."""


def euler_rule(sigma_hi: float, sigma_lo: float) -> tuple:
    """ComfyUI's `euler` (= `ddim`): a plain Euler step to σ_lo, no noise."""
    return 1.0, 0.0, sigma_lo


def sample(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, rule: StepRule = euler_rule,
           noises: Optional[list] = None, callback: Optional["Callback"] = None) -> torch.Tensor:
    """ComfyUI's euler, euler_ancestral and lcm samplers as one rule: x_lo = a·Euler(x_hi; σ_hi → s) + b·n_i."""
    steps = len(sigmas) - 1
    for index, (sigma_hi, sigma_lo) in enumerate(zip(sigmas[:-1].tolist(), sigmas[1:].tolist())):
        a, b, s = rule(sigma_hi, sigma_lo)
        x = a * euler_step(x, to_d(x, sigma_hi, denoiser(x, sigma_hi)), sigma_hi, s)
        if b:
            x = x + b * noises[index].to(x)
        notify(callback, step=index, steps=steps, iteration=0, residual=0.0)
    return x


def inverse_step_map(denoiser: Denoiser, x_lo: torch.Tensor, sigma_lo: float, sigma_hi: float):
    """T(y) = x_lo + (σ_hi − σ_lo)·d(y, σ_hi); its fixed point is the exact inverse of one Euler step
    (docs/methods.md §1)."""
    def T(y: torch.Tensor) -> torch.Tensor:
        return x_lo + (sigma_hi - sigma_lo) * to_d(y, sigma_hi, denoiser(y, sigma_hi))
    return T


def level_scale(input_scale: InputScale, sigma_from: float, sigma_to: float) -> float:
    """c_in(σ_from)/c_in(σ_to): lets the model see x at σ_to as it saw it at σ_from (docs/methods.md §2)."""
    return input_scale(sigma_from) / input_scale(sigma_to)


def rms(t: torch.Tensor) -> torch.Tensor:
    """Per-sample root mean square ‖t‖/√numel, shape (batch,)."""
    return t.flatten(1).float().pow(2).mean(1).sqrt()


def keep_best(best: Optional[torch.Tensor], best_score: Optional[torch.Tensor], candidate: torch.Tensor,
              score: torch.Tensor) -> tuple:
    """Per sample, keep the candidate with the lowest score so far (scores of shape (batch,))."""
    if best is None:
        return candidate, score
    improved = score < best_score
    return (torch.where(improved.view(-1, *[1] * (candidate.ndim - 1)), candidate, best),
            torch.where(improved, score, best_score))


def describe_sigmas(sigmas: torch.Tensor, around: Optional[int] = None, width: int = 3) -> str:
    """A schedule for an error message: a short one whole, a long one by its ends; the values `around` an index
    marked [i]=σ."""
    values = sigmas.flatten().tolist()
    keep = set(range(len(values)))
    if len(values) > 2 * width + 2:
        keep = set(range(width)) | set(range(len(values) - width, len(values)))
        if around is not None:
            keep |= set(range(max(0, around - 1), min(len(values), around + 2)))
    parts, previous = [], -1
    for index in sorted(keep):
        if index > previous + 1:
            parts.append("…")
        marked = around is not None and abs(index - around) <= 1
        parts.append(f"[{index}]={values[index]:.4g}" if marked else f"{values[index]:.4g}")
        previous = index
    count = f" ({len(values)} values)" if len(keep) < len(values) else ""
    return "[" + ", ".join(parts) + "]" + count


def validate_schedule(sigmas: torch.Tensor) -> None:
    """A schedule is finite, strictly decreasing, non-negative and ends at 0; say what is wrong otherwise."""
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas: expected at least 2 values (σ_max … 0), got shape {tuple(sigmas.shape)}")
    finite = torch.isfinite(sigmas)
    if not finite.all():
        first = int((~finite).nonzero()[0])
        raise ValueError(f"sigmas: expected finite values, got {describe_sigmas(sigmas, first)}")
    rising = ~(sigmas[:-1] > sigmas[1:])
    if rising.any():
        first = int(rising.nonzero()[0])
        raise ValueError(f"sigmas: expected a strictly decreasing schedule (σ_max … 0), got "
                         f"{describe_sigmas(sigmas, first + 1)}")
    if float(sigmas[-1]) != 0.0 or float(sigmas.min()) < 0:
        raise ValueError(f"sigmas: expected non-negative values ending at 0, got {describe_sigmas(sigmas)}")


def ascending_steps(sigmas: torch.Tensor) -> Iterator[tuple[int, float, float]]:
    """(index, σ_lo, σ_hi) for each step of a descending schedule, from the clean end up to noise."""
    values = sigmas.tolist()
    for index in range(len(values) - 1):
        yield index, values[-1 - index], values[-2 - index]


@dataclass
class InversionResult:
    """What every inversion solver returns."""
    latent: torch.Tensor
    """The seed x_N at σ_N = sigmas[0], in the same (model) space as the input latent."""
    residuals: list = field(default_factory=list)
    """Per step, from the clean end: per iteration, the largest per-sample RMS residual ‖T(y) − y‖/√numel."""
    evaluations: int = 0
    """Number of (guided) denoiser evaluations used."""
    extras: dict = field(default_factory=dict)
    """Method-specific state that travels with the seed: EDICT/BDIA's `partner` latent."""


class CountingDenoiser:
    """Wraps a denoiser and counts its evaluations (the cost unit of every method); `on_evaluation()` runs after
    each one (progress, interruption)."""

    def __init__(self, denoiser: Denoiser, on_evaluation: Optional[Callable[[], None]] = None):
        self.denoiser, self.on_evaluation = denoiser, on_evaluation
        self.evaluations = 0

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        self.evaluations += 1
        denoised = self.denoiser(x, sigma)
        if self.on_evaluation is not None:
            self.on_evaluation()
        return denoised


def notify(callback: Optional[Callback], **event) -> None:
    """Send one progress event to the callback, if any."""
    if callback is not None:
        callback(event)


@dataclass
class StepProblem:
    """One inversion step: find x_hi with x_hi = T(x_hi), going up from x_lo at σ_lo to σ_hi."""
    T: Callable[[torch.Tensor], torch.Tensor]
    x_lo: torch.Tensor
    sigma_lo: float
    sigma_hi: float
    y0: torch.Tensor
    """Initial guess: x_lo as the model would see it at σ_hi (classic DDIM inversion's evaluation point)."""


StepSolver = Callable[[StepProblem, Callable[[int, float], None]], tuple]
"""solve(problem, on_iteration) -> (x_hi, residual trace); on_iteration(k, residual) after each evaluation."""


def invert_by_steps(solve_step: StepSolver, denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, *,
                    input_scale: InputScale = vp_input_scale, callback: Optional[Callback] = None,
                    rule: StepRule = euler_rule, noises: Optional[list] = None,
                    warm_start: bool = False) -> InversionResult:
    """Invert a sampler step by step from σ = 0 up to sigmas[0], solving x_hi = T(x_hi) at each step
    (docs/methods.md §1, §5).

    With a stochastic rule the step's fixed noise n_i is removed first: its deterministic part
    (x_lo − b·n_i)/a is then an Euler step to s, inverted like any other. The initial guess is classic DDIM's
    evaluation point, or with `warm_start` the previous step's solved direction d extrapolated: x_lo + (σ_hi − s)·d.
    """
    validate_schedule(sigmas)
    counter = CountingDenoiser(denoiser)
    steps = len(sigmas) - 1
    x, residuals, direction = x0, [], None
    for index, sigma_lo, sigma_hi in ascending_steps(sigmas):
        a, b, s = rule(sigma_hi, sigma_lo)
        target = (x - b * noises[steps - 1 - index].to(x)) / a if b else x / a
        if warm_start and direction is not None:
            y0 = target + (sigma_hi - s) * direction
        else:
            y0 = target * level_scale(input_scale, s, sigma_hi)
        problem = StepProblem(T=inverse_step_map(counter, target, s, sigma_hi), x_lo=target, sigma_lo=s,
                              sigma_hi=sigma_hi, y0=y0)

        def on_iteration(iteration: int, residual: float, index=index) -> None:
            notify(callback, step=index, steps=steps, iteration=iteration, residual=residual)

        x, trace = solve_step(problem, on_iteration)
        direction = (x - target) / (sigma_hi - s)
        residuals.append(trace)
    return InversionResult(latent=x, residuals=residuals, evaluations=counter.evaluations)
