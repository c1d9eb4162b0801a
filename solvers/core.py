"""The one equation behind every method: the Euler (= DDIM) step in ComfyUI's sigma space and the
implicit equation that inverts it (docs/architecture.md §3, docs/methods.md §1).

A denoiser is any callable D(x, sigma) -> x0-estimate for a batched latent x and a scalar sigma,
with classifier-free guidance already applied. Nothing here imports ComfyUI.
"""
import math
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Callable, Iterator, Optional, Protocol

import torch


class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor: ...


InputScale = Callable[[float], float]
"""c_in(sigma): the factor by which the model sees a latent at noise level sigma."""

Callback = Callable[[dict], None]
"""Called after every model evaluation with {'step', 'steps', 'iteration', 'residual'}; may raise to stop."""


class InversionMethod(Protocol):
    """The one form of every inverter once its node's method spec has bound its options object (and, for a step
    solver, the sampler's `Stepping`; for RNRI the family's prior): the host calls it with ComfyUI's guided denoiser,
    the image latent (model space) and the σ schedule (descending, ending at 0), and exactly these two keywords."""

    def __call__(self, denoiser: "Denoiser", x0: torch.Tensor, sigmas: torch.Tensor, *, input_scale: InputScale,
                 callback: Optional[Callback]) -> "InversionResult": ...


NOT_ON_NODE = {"widget": False}
"""Field metadata of a method option that tunes the solver but is not one of its node's widgets."""


def widgets(options) -> dict:
    """A method's options object as its node's widget values, by input name (the fields not marked NOT_ON_NODE)."""
    return {f.name: getattr(options, f.name) for f in fields(options) if f.metadata.get("widget", True)}


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


class Noising(Enum):
    """How a model family's forward process noises a clean latent x₀ in ComfyUI's σ space (its noise_scaling)."""
    VE = "x_σ = x₀ + σ·n (EPS, V-prediction, EDM, X0; Cosmos' RFlow)"
    FLOW = "x_σ = (1 − σ)·x₀ + σ·n (rectified flow: CONST)"


class ModelGradient(Enum):
    """What a method asks of the model besides its outputs."""
    NONE = "outputs only"
    VJP = "vector-Jacobian products through the model (autograd)"


@dataclass(frozen=True)
class Stage:
    """One part of a sampler's run that inversion solves as one step: from x_hi at σ_hi to x_lo at σ_lo
    (docs/methods.md §14).

    `step(denoiser, x_hi, history) -> (x_lo, records)`: `history` is the flat list of the records of the stages
    above (earlier in sampling; inside an inversion sweep, the previous sweep's records of every stage), or None where
    they are not known yet (inversion's first sweep), and the stage then runs as its sampler's lowest-order first
    step; `records` are what later stages read (a multistep sampler's denoised outputs)."""
    sigma_hi: float
    sigma_lo: float
    step: Callable
    reads_history: bool = False
    predictable: bool = False
    """Its records are one denoised output at σ_hi each, smooth along the trajectory: a first sweep may extrapolate
    them from the stages solved below (dpmpp_2m, res_multistep; docs/methods.md §14)."""
    implicit: Optional[Callable] = None
    """The form inversion solves, if not `step` itself: the same step with the history it reads re-expressed around
    the unknown (e.g. a denoised output above as D(y + its stale offset)), so that a stale history moves the solution
    less; it equals `step` once the history is the one the solution produces."""


Stepper = Callable[[torch.Tensor], list]
"""stepper(sigmas) -> the sampler's stages over this descending schedule, from σ_max down (docs/methods.md §14)."""


@dataclass(frozen=True, eq=False)
class Stepping:
    """How the sampler being inverted steps: a step rule with its fixed per-step noises n_i (euler, euler_ancestral,
    lcm; docs/methods.md §5), or its stages (heun, dpm_2, the multistep samplers; §14)."""
    rule: StepRule = euler_rule
    noises: Optional[list] = None
    """The stochastic rules' fixed noises, one per step from σ_max down."""
    stepper: Optional[Stepper] = None
    sweeps: int = 8
    """The most sweeps over a multistep sampler's stages where the method's options leave it to the sampler:
    samplers.sampler_stepping sets each sampler's own (SAMPLER_SWEEPS)."""


EULER = Stepping()
"""ComfyUI's `euler` (= `ddim`)."""


SWEEP_FORCING = 0.5
"""Inside a multistep sweep each stage is solved only to this fraction of its first residual: its history moves until
the sweeps converge (docs/methods.md §14; the price it sets: bench/results/README.md, "Multistep inversion cost")."""


@dataclass(frozen=True)
class Sweeps:
    """How a multistep sampler's stages are swept (docs/methods.md §14): at most `count` sweeps, stopping once a sweep
    starts within `tolerance` everywhere, accelerated by `mix(iterates, images)` (Anderson) over the last `window`;
    inside a sweep each stage is solved to `forcing` × its first residual."""
    count: Optional[int] = 1
    """None: the sampler's own (`Stepping.sweeps`)."""
    tolerance: float = 0.0
    mix: Optional[Callable[[list, list], torch.Tensor]] = None
    window: int = 5
    forcing: float = SWEEP_FORCING

    def __post_init__(self):
        if self.count is not None and self.count < 1:
            raise ValueError(f"sweeps: expected at least 1, got {self.count}")


def sample(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, rule: StepRule = euler_rule,
           noises: Optional[list] = None, callback: Optional["Callback"] = None,
           stepper: Optional[Stepper] = None) -> torch.Tensor:
    """ComfyUI's euler, euler_ancestral and lcm samplers as one rule: x_lo = a·Euler(x_hi; σ_hi → s) + b·n_i; or a
    sampler given by its `stepper`, stage after stage, each reading the records of those before."""
    if stepper is not None:
        stages, history = stepper(sigmas), []
        for index, stage in enumerate(stages):
            x, records = stage.step(denoiser, x, history)
            history = history + records
            notify(callback, step=index, steps=len(stages), iteration=0, residual=0.0)
        return x
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
    """Method-specific state that travels with the seed: EDICT/BDIA's `partner` latent; a step-by-step inversion's
    `trajectory`, the latents it solved at sigmas[0], …, sigmas[N] (σ_max first, the image last: one latent per σ),
    which an attention edit's exact source branch follows."""


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
    forcing: float = 0.0
    """The step may stop once its residual is at or under forcing × its first residual (an inexact solve, as inside a
    multistep sweep whose history is still moving; Dembo, Eisenstat & Steihaug 1982); 0: solve to the tolerance."""


StepSolver = Callable[[StepProblem, Callable[[int, float], None]], tuple]
"""solve(problem, on_iteration) -> (x_hi, residual trace); on_iteration(k, residual) after each evaluation."""


@dataclass
class StepWalk:
    """A step-by-step inversion's state from the clean end up: the latents solved so far (the image first), each step's
    residual trace and the last solved direction d (the warm start)."""
    trajectory: list
    residuals: list = field(default_factory=list)
    direction: Optional[torch.Tensor] = None

    def problem(self, denoiser: Denoiser, index: int, sigma_lo: float, sigma_hi: float, stepping: Stepping, steps: int,
                input_scale: InputScale, warm_start: bool) -> StepProblem:
        """The next step's equation x_hi = T(x_hi) (docs/methods.md §1, §5). With a stochastic rule the step's fixed
        noise n_i is removed first: its deterministic part (x_lo − b·n_i)/a is then an Euler step to s, inverted like
        any other. The initial guess is classic DDIM's evaluation point, or with `warm_start` the previous step's
        solved direction d extrapolated: x_lo + (σ_hi − s)·d."""
        x = self.trajectory[-1]
        a, b, s = stepping.rule(sigma_hi, sigma_lo)
        target = (x - b * stepping.noises[steps - 1 - index].to(x)) / a if b else x / a
        if warm_start and self.direction is not None:
            y0 = target + (sigma_hi - s) * self.direction
        else:
            y0 = target * level_scale(input_scale, s, sigma_hi)
        return StepProblem(T=inverse_step_map(denoiser, target, s, sigma_hi), x_lo=target, sigma_lo=s,
                           sigma_hi=sigma_hi, y0=y0)

    def take(self, problem: StepProblem, x: torch.Tensor, trace: list) -> None:
        """Step up to the solution x of `problem`, reached with residual trace `trace`."""
        self.direction = (x - problem.x_lo) / (problem.sigma_hi - problem.sigma_lo)
        self.residuals.append(trace)
        self.trajectory.append(x)

    def copy(self) -> "StepWalk":
        return StepWalk(list(self.trajectory), list(self.residuals), self.direction)

    def result(self, evaluations: int) -> InversionResult:
        """The seed (the last latent solved), the residuals and the trajectory from σ_max down."""
        return InversionResult(latent=self.trajectory[-1], residuals=self.residuals, evaluations=evaluations,
                               extras={"trajectory": self.trajectory[::-1]})


def step_events(callback: Optional[Callback], index: int, steps: int) -> Callable[[int, float], None]:
    """on_iteration(k, residual) of step `index`: one progress event per evaluation."""
    def on_iteration(iteration: int, residual: float) -> None:
        notify(callback, step=index, steps=steps, iteration=iteration, residual=residual)
    return on_iteration


def invert_by_steps(solve_step: StepSolver, denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, *,
                    input_scale: InputScale = vp_input_scale, callback: Optional[Callback] = None,
                    stepping: Stepping = EULER, warm_start: bool = False, sweeps: Sweeps = Sweeps()
                    ) -> InversionResult:
    """Invert a sampler step by step from σ = 0 up to sigmas[0], solving x_hi = T(x_hi) at each step
    (docs/methods.md §1, §5; each step's equation and initial guess: `StepWalk.problem`). A sampler given by its
    stages is inverted stage by stage in `sweeps` (`invert_by_stages`).
    """
    validate_schedule(sigmas)
    if stepping.stepper is not None:
        if sweeps.count is None:
            sweeps = replace(sweeps, count=stepping.sweeps)
        return invert_by_stages(solve_step, denoiser, x0, sigmas, stepping.stepper, input_scale=input_scale,
                                callback=callback, warm_start=warm_start, sweeps=sweeps)
    counter = CountingDenoiser(denoiser)
    steps = len(sigmas) - 1
    walk = StepWalk([x0])
    for index, sigma_lo, sigma_hi in ascending_steps(sigmas):
        problem = walk.problem(counter, index, sigma_lo, sigma_hi, stepping, steps, input_scale, warm_start)
        walk.take(problem, *solve_step(problem, step_events(callback, index, steps)))
    return walk.result(counter.evaluations)


def stage_step_map(stage: Stage, denoiser: Denoiser, x_lo: torch.Tensor, history: Optional[list]):
    """T(y) = y + x_lo − S(y), S the stage's step; its fixed point is the exact inverse of the stage (for euler
    exactly the T of §1). Also returns best(): the records of the iterate with the smallest residual so far."""
    kept = {"best": None, "score": None}

    step = stage.implicit or stage.step

    def T(y: torch.Tensor) -> torch.Tensor:
        stepped, records = step(denoiser, y, history)
        mapped = y + (x_lo - stepped)
        if records:
            kept["best"], kept["score"] = keep_best(kept["best"], kept["score"], torch.stack(records, 1),
                                                    rms(mapped - y))
        return mapped

    def best() -> list:
        return [] if kept["best"] is None else list(kept["best"].unbind(1))

    return T, best


@dataclass(frozen=True)
class StageSweep:
    """One sweep's outcome over a sampler's stages (indexed from σ_max down): each stage's solved x_hi and the records
    it leaves for the stages below it; `start`: the largest residual a stage had at the sweep's start."""
    solved: list
    records: list
    start: float = math.inf


class StageSweeper:
    """Sweeps of a sampler's stages from the clean end up (Gauss-Seidel), each stage's equation S(x_hi; history) =
    x_lo solved as x_hi = T(x_hi) (docs/methods.md §14); collects every stage's residual trace and reports progress
    after each evaluation."""

    def __init__(self, solve_step: StepSolver, denoiser: Denoiser, x0: torch.Tensor, stages: list,
                 input_scale: InputScale, callback: Optional[Callback], warm_start: bool, sweeps: Sweeps = Sweeps()):
        self.solve_step, self.x0, self.stages = solve_step, x0, stages
        self.input_scale, self.warm_start = input_scale, warm_start
        # a step map may cost several evaluations: progress is reported after each one, with the step's latest residual
        self.progress = {"step": 0, "iteration": 0, "residual": math.nan}
        self.counter = CountingDenoiser(denoiser, lambda: notify(callback, steps=len(stages), **self.progress))
        self.residuals = [[] for _ in stages]
        multistep = any(stage.reads_history for stage in stages)
        self.forcing = sweeps.forcing if multistep else 0.0
        # one sweep is DDIM-style inversion of the sampler (each stage first order); more refine a predicted history
        self.predict = multistep and sweeps.count > 1

    def first_guess(self, index: int, x: torch.Tensor, direction: Optional[torch.Tensor],
                    previous: Optional[StageSweep]) -> torch.Tensor:
        """The previous sweep's solution moved as the level below it moved in this sweep; else the warm start's
        extrapolated direction, or DDIM's evaluation point."""
        stage = self.stages[index]
        if previous is not None:
            below = previous.solved[index + 1] if index + 1 < len(self.stages) else self.x0
            return previous.solved[index] + (x - below)
        if self.warm_start and direction is not None:
            return x + (stage.sigma_hi - stage.sigma_lo) * direction
        return x * level_scale(self.input_scale, stage.sigma_lo, stage.sigma_hi)

    def sweep(self, previous: Optional[StageSweep]) -> StageSweep:
        """One pass from the clean end up, reading the records `previous` left above each stage (none: each stage
        runs as its sampler's lowest-order first step)."""
        count = len(self.stages)
        x, direction, starts = self.x0, None, []
        solved, records = [None] * count, [[] for _ in self.stages]
        history = None if previous is None else [record for above in previous.records for record in above]
        for position, index in enumerate(reversed(range(count))):
            stage = self.stages[index]
            if previous is not None and position == 0 and not stage.reads_history:
                # its x_lo is the image and it reads no history: its first solution stands (the state Anderson mixed
                # across sweeps need not)
                x, records[index] = self.clean_end
                solved[index] = x
                continue
            if previous is None and self.predict and stage.predictable:
                history = predicted_history(self.stages, records, index)
            T, best_records = stage_step_map(stage, self.counter, x, history)
            # the clean end's stage, if it reads no history, is solved once to the tolerance (later sweeps keep it)
            settled = position == 0 and not stage.reads_history
            problem = StepProblem(T=T, x_lo=x, sigma_lo=stage.sigma_lo, sigma_hi=stage.sigma_hi,
                                  y0=self.first_guess(index, x, direction, previous),
                                  forcing=0.0 if settled else self.forcing)
            # progress: the first sweep walks the steps; later sweeps refine at the last one
            self.progress.update(step=position if previous is None else count - 1, iteration=0, residual=math.nan)

            def on_iteration(iteration: int, residual: float) -> None:
                self.progress.update(iteration=iteration + 1, residual=residual)

            x_hi, trace = self.solve_step(problem, on_iteration)
            starts.append(trace[0])
            self.residuals[position].extend(trace)
            records[index], solved[index] = best_records(), x_hi
            if settled:
                self.clean_end = x_hi, records[index]
            direction = (x_hi - x) / (stage.sigma_hi - stage.sigma_lo)
            x = x_hi
        return StageSweep(solved=solved, records=records, start=max(starts))


def predicted_history(stages: list, records: list, index: int) -> Optional[list]:
    """A first sweep's history for stage `index`: the records of the stages solved below it, and for it and the stages
    above each record extrapolated linearly in log σ from the two solved stages nearest below (a second-order
    prediction of the denoised outputs not solved yet); None (first order) until two are solved."""
    below = [k for k in range(index + 1, len(stages)) if records[k]][:2]
    if len(below) < 2:
        return None
    near, far = below
    t_near, t_far = math.log(stages[near].sigma_hi), math.log(stages[far].sigma_hi)
    flat = []
    for k in range(len(stages)):
        if k > index:
            flat += records[k]
            continue
        w = (math.log(stages[k].sigma_hi) - t_near) / (t_near - t_far)
        flat += [a + w * (a - b) for a, b in zip(records[near], records[far])]
    return flat


def flat_state(sweep: StageSweep, scales: list) -> torch.Tensor:
    """A sweep's whole trajectory with its records as one tensor, each level as the model sees it (c_in·x) so that
    every level weighs alike in Anderson's least squares."""
    return torch.stack([x * scale for x, scale in zip(sweep.solved, scales)]
                       + [record for above in sweep.records for record in above], 1)


def unflat_state(state: torch.Tensor, layout: list, scales: list) -> StageSweep:
    """The inverse of flat_state; `layout`: how many records each stage leaves."""
    parts = list(state.unbind(1))
    flat = parts[len(scales):]
    records = [[flat.pop(0) for _ in range(size)] for size in layout]
    return StageSweep(solved=[x / scale for x, scale in zip(parts[:len(scales)], scales)], records=records)


def invert_by_stages(solve_step: StepSolver, denoiser: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor,
                     stepper: Stepper, *, input_scale: InputScale = vp_input_scale,
                     callback: Optional[Callback] = None, warm_start: bool = False,
                     sweeps: Sweeps = Sweeps()) -> InversionResult:
    """Invert a sampler given as stages (docs/methods.md §14): each stage's equation S(x_hi; history) = x_lo solved
    as x_hi = T(x_hi) from the clean end up, in sweeps.

    A multistep stage reads the records (denoised outputs) of the stages above it, which inversion has not solved
    yet: the first sweep runs each stage as its sampler's first, lowest-order step; each later sweep solves every
    stage again, from the previous solution, with the records left above it (Gauss-Seidel from the clean end). The
    state a sweep maps to the next is the whole trajectory with its records; `sweeps.mix` (Anderson) may accelerate
    that map over the last `sweeps.window` sweeps. It stops once a sweep finds every stage already within
    `sweeps.tolerance` at its start (the full forward run reproduces every level), or after `sweeps.count` sweeps,
    and returns the sweep whose start was the most consistent; a sampler whose stages read no history needs one
    sweep. Residual trace: per stage from the clean end, its iterations over all sweeps."""
    stages = stepper(sigmas)
    sweeper = StageSweeper(solve_step, denoiser, x0, stages, input_scale, callback, warm_start, sweeps)
    current = sweeper.sweep(None)
    best, best_start, iterates, images = current.solved[0], math.inf, [], []
    layout, scales = [len(above) for above in current.records], [input_scale(stage.sigma_hi) for stage in stages]
    for _ in range(sweeps.count - 1 if any(stage.reads_history for stage in stages) else 0):
        state = flat_state(current, scales)
        current = sweeper.sweep(current)
        if current.start < best_start:
            best, best_start = current.solved[0], current.start
        if current.start <= sweeps.tolerance:
            break
        if sweeps.mix is None:
            continue
        iterates = (iterates + [state])[-(sweeps.window + 1):]
        images = (images + [flat_state(current, scales)])[-(sweeps.window + 1):]
        if len(iterates) > 1:
            current = unflat_state(sweeps.mix(iterates, images), layout, scales)
    return InversionResult(latent=best, residuals=sweeper.residuals, evaluations=sweeper.counter.evaluations)
