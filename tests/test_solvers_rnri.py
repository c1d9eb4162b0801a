"""RNRI on analytic oracles (no ComfyUI); and, marked `models`, RNRI against FixedPoint on the two trained models
through ComfyUI's guider in process.

What the theory says, and what these tests check:
- λ = 0: F(y) = ‖y − T(y)‖₁ ≥ 0 and its only root is the exact inverse of the step, so Newton-Raphson on F
  can only stop there. With a linear T whose Jacobian is c·I (the Gaussian-data oracle), the autograd step
  maps the residual r = y − T(y) to r − sgn(r)·mean|r|·(1 − c)/(1 − c + η) exactly: every coordinate moves by
  the same amount, so convergence is linear at best (the mean absolute deviation of |r| over its mean), not
  the quadratic rate of a vector Newton method.
- jacobian-free: ∂T/∂y = 0 gives the authors' sign step y + mean|r|/(1 + η)·sgn(T(y) − y).
- λ > 0: F ≥ λ·G > 0 wherever the exact inverse is not the prior mean, so F has no root there; the
  iteration trades residual for prior likelihood, and the residual it settles at does not shrink as λ grows.

The `newton` update (Anderson, then Newton-Krylov on R(y) = y − T(y)) is a vector Newton method: it solves a linear
step whose fixed-point map expands (spectral radius > 1) in one iteration, converges quadratically on a smooth
nonlinear step once its Krylov space spans the latent, finds the exact root at λ = 0 (and at λ > 0 on a well-posed
step, where λ does not apply), keeps its iterates bounded on a fold with no root when λ > 0, and counts every
evaluation, its Jacobian-vector products and line-search trials included.
"""
import pytest
import torch
from support.oracles import GaussianDataDenoiser, LinearDenoiser, karras_sigmas, random_linear_denoiser

from solvers import (
    CountingDenoiser,
    FixedPointOptions,
    StepProblem,
    euler_rule,
    fixed_point_invert,
    fixed_point_solve,
    inverse_step_map,
    rms,
    sample,
)
from solvers.rnri import (
    FOLD_RATIO,
    RNRIOptions,
    flow_transition_prior,
    fold_ratio,
    newton_krylov_solve,
    newton_step,
    objective_and_gradient,
    rnri_invert,
    rnri_objective,
    rnri_solve,
    ve_transition_prior,
)

F64 = torch.float64


def gaussian_step(sigma_lo=0.4, sigma_hi=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(1, 4, 6, 6, generator=g, dtype=F64) * 0.5
    oracle = GaussianDataDenoiser(mean, std=0.7)
    x_lo = mean + 0.7 * torch.randn(2, 4, 6, 6, generator=g, dtype=F64)
    problem = StepProblem(T=inverse_step_map(oracle, x_lo, sigma_lo, sigma_hi), x_lo=x_lo, sigma_lo=sigma_lo,
                          sigma_hi=sigma_hi, y0=x_lo)
    return oracle, problem


def solve(problem, iterations, regularization=0.0, gradient="autograd", damping=0.1):
    return rnri_solve(problem, lambda *_: None, iterations, regularization, gradient, damping, ve_transition_prior)


def test_autograd_step_moves_every_residual_by_the_mean():
    oracle, p = gaussian_step()
    c = oracle.contraction(p.sigma_lo, p.sigma_hi)
    eta = 0.1
    mean, variance = ve_transition_prior(p.x_lo, p.sigma_lo, p.sigma_hi)
    mapped, objective, grad = objective_and_gradient(p.T, p.y0, mean, variance, 0.0, "autograd")
    y1 = newton_step(p.y0, objective, grad, eta)
    r0, r1 = p.y0 - mapped, y1 - p.T(y1)
    mean_abs = r0.flatten(1).abs().mean(1).view(-1, 1, 1, 1)
    assert torch.allclose(r1, r0 - torch.sign(r0) * mean_abs * (1 - c) / (1 - c + eta), atol=1e-12)


def test_jacobian_free_step_is_the_authors_sign_step():
    _, p = gaussian_step()
    mean, variance = ve_transition_prior(p.x_lo, p.sigma_lo, p.sigma_hi)
    mapped, objective, grad = objective_and_gradient(p.T, p.y0, mean, variance, 0.0, "jacobian-free")
    y1 = newton_step(p.y0, objective, grad, 0.1)
    mean_abs = (mapped - p.y0).flatten(1).abs().mean(1).view(-1, 1, 1, 1)
    assert torch.allclose(y1, p.y0 + mean_abs / 1.1 * torch.sign(mapped - p.y0), atol=1e-12)


@pytest.mark.parametrize("sigmas", [(0.0, 0.05), (0.4, 2.0), (2.0, 14.6)])
def test_unregularized_rnri_converges_to_the_exact_step_inverse_gaussian(sigmas):
    oracle, p = gaussian_step(*sigmas)
    exact = oracle.exact_step_inverse(p.x_lo, *sigmas)
    errors = [float(rms(solve(p, k)[0] - exact).max()) for k in (1, 5, 20, 100, 400)]
    assert all(b <= a * 1.0001 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.03 * errors[0], errors


def test_unregularized_rnri_converges_on_the_linear_oracle():
    oracle = random_linear_denoiser(dim=24, seed=1)
    x_lo = torch.randn(2, 24, generator=torch.Generator().manual_seed(1), dtype=F64)
    p = StepProblem(T=inverse_step_map(oracle, x_lo, 0.5, 1.2), x_lo=x_lo, sigma_lo=0.5, sigma_hi=1.2, y0=x_lo)
    exact = oracle.exact_step_inverse(x_lo, 0.5, 1.2)
    errors = [float(rms(solve(p, k)[0] - exact).max()) for k in (1, 20, 400)]
    assert errors[2] < 0.05 * errors[0], errors


def test_regularization_trades_residual_for_prior_likelihood():
    _, p = gaussian_step()
    settled = []
    for lam in (0.0, 1.0, 10.0):
        _, trace = solve(p, 200, regularization=lam)
        settled.append(min(trace))
    assert settled[0] < settled[1] <= settled[2], settled


def test_best_objective_iterate_is_returned():
    _, p = gaussian_step(2.0, 14.6)
    mean, variance = ve_transition_prior(p.x_lo, p.sigma_lo, p.sigma_hi)
    result, _ = solve(p, 6, regularization=0.1)
    candidates, y = [], p.y0
    for _ in range(6):
        mapped, objective, grad = objective_and_gradient(p.T, y, mean, variance, 0.1, "autograd")
        candidates.append((objective, mapped))
        y = newton_step(y, objective, grad, 0.1)
    for b in range(result.shape[0]):
        best = min(candidates, key=lambda c: float(c[0][b]))[1][b]
        assert torch.allclose(result[b], best)


def test_autograd_gradient_matches_finite_differences():
    def smooth(x, sigma):  # a nonlinear denoiser: no closed form, smooth everywhere
        return torch.tanh(x) * (1.0 / (1.0 + sigma ** 2)) + 0.1 * x.roll(1, -1)

    x_lo = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    T = inverse_step_map(smooth, x_lo, 0.3, 0.9)
    mean, variance = ve_transition_prior(x_lo, 0.3, 0.9)
    y = x_lo * 1.1
    _, _, grad = objective_and_gradient(T, y, mean, variance, 0.5, "autograd")
    direction = torch.randn(y.shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    eps = 1e-6
    def F(point):
        return rnri_objective(point, T(point), mean, variance, 0.5)
    numeric = (F(y + eps * direction) - F(y - eps * direction)) / (2 * eps)
    analytic = (grad * direction).flatten(1).sum(1)
    assert torch.allclose(numeric, analytic, rtol=1e-5)


def test_full_inversion_round_trip_improves_on_ddim_with_iterations():
    g = torch.Generator().manual_seed(5)
    mean = torch.randn(1, 4, 6, 6, generator=g, dtype=F64) * 0.5
    oracle = GaussianDataDenoiser(mean, std=0.7)
    x0 = mean + 0.7 * torch.randn(2, 4, 6, 6, generator=g, dtype=F64)
    sigmas = karras_sigmas(10)
    errors = {}
    for k in (1, 2, 50):
        result = rnri_invert(oracle, x0, sigmas, RNRIOptions(update="paper", iterations=k, regularization=0.0,
                                                             gradient="autograd"))
        assert result.evaluations == 10 * k
        errors[k] = float((sample(oracle, result.latent, sigmas) - x0).norm() / x0.norm())
    assert errors[50] < errors[2] < errors[1], errors


@pytest.mark.parametrize("gradient", ["jacobian-free", "autograd"])
def test_paper_update_is_bounded_where_it_used_to_diverge(gradient):
    """An expanding linear step map (eigenvalue −1.6): the unguarded update walked away, so that 20 iterations ended
    up to 2× further from the image than 2. A trial that raises F is now rejected and its step halved."""
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=F64))
    gains = torch.tensor([6.0] * 4 + [1.5] * 4 + [0.5] * 4, dtype=F64)
    oracle = LinearDenoiser(basis @ torch.diag(gains) @ basis.T)
    x0 = torch.randn(2, 12, generator=g, dtype=F64)
    sigmas = torch.tensor([14.6, 2.0, 0.35, 0.0413, 0.0], dtype=F64)
    errors = {}
    for k in (2, 20):
        result = rnri_invert(oracle, x0, sigmas, RNRIOptions(update="paper", iterations=k, gradient=gradient))
        assert torch.isfinite(result.latent).all() and result.evaluations == 4 * k
        errors[k] = float((sample(oracle, result.latent, sigmas) - x0).norm() / x0.norm())
    assert errors[20] <= errors[2], errors


def test_paper_update_never_accepts_a_trial_that_raises_the_objective():
    """At λ = 0 (jacobian-free) each trial is a sign step of some length from the accepted iterate: replaying the
    evaluated points, every trial is taken from the lowest-F point evaluated before it, never from a worse one."""
    _, p = expanding_linear_step()
    mean, variance = ve_transition_prior(p.x_lo, p.sigma_lo, p.sigma_hi)
    points = []
    problem = StepProblem(T=lambda y: points.append(y.clone()) or p.T(y), x_lo=p.x_lo, sigma_lo=p.sigma_lo,
                          sigma_hi=p.sigma_hi, y0=p.y0)
    rnri_solve(problem, lambda *_: None, 20, 0.0, "jacobian-free", 0.1, ve_transition_prior)
    objectives = torch.stack([rnri_objective(y, p.T(y), mean, variance, 0.0) for y in points])  # (trials, batch)
    for k in range(1, len(points)):
        anchor = objectives[:k].argmin(0)  # per sample, the accepted iterate so far
        for b in range(p.y0.shape[0]):
            base = points[int(anchor[b])][b]
            mapped = p.T(base.unsqueeze(0).expand_as(p.y0))[b]  # the sign step from it, up to its length
            direction = torch.sign(mapped - base)
            moved = points[k][b] - base
            assert torch.allclose(moved, moved.abs().mean() * direction, atol=1e-12), (k, b)
    assert bool((objectives.min(0).values < 0.5 * objectives[0]).all())  # and it gets somewhere


def test_flow_prior_reduces_to_the_ve_prior_shape():
    x_lo = torch.ones(1, 4, dtype=F64)
    mean, variance = flow_transition_prior(x_lo, 0.0, 0.5)
    assert torch.allclose(mean, 0.5 * x_lo) and variance == pytest.approx(0.25)
    mean, variance = flow_transition_prior(x_lo, 0.2, 0.6)
    assert torch.allclose(mean, x_lo * 0.4 / 0.8) and variance == pytest.approx(0.36 - (0.5 * 0.2) ** 2)


@pytest.mark.parametrize("options,message", [
    ({"iterations": 0}, "iterations: expected at least 1, got 0"),
    ({"regularization": -1.0}, "regularization: expected λ ≥ 0, got -1.0"),
    ({"gradient": "numeric"}, "gradient: expected one of"),
    ({"damping": 0.0}, "damping: expected η > 0"),
    ({"update": "broyden"}, "update: expected one of"),
    ({"krylov": 0}, "krylov: expected at least 1"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RNRIOptions(**options)


def newton(problem, iterations, regularization=0.0, **options):
    """The newton update with its Anderson phase cut to the evaluation of y0, so that Newton-Krylov does the work."""
    settings = dict(iterations=iterations, regularization=regularization, max_iterations=1, tolerance=1e-15,
                    trigger=1.0, krylov=5, restarts=1, line_search=3, epsilon=None)
    return newton_krylov_solve(problem, lambda *_: None, RNRIOptions(**{**settings, **options}), ve_transition_prior)


def expanding_linear_step(seed=0):
    """A linear denoiser whose step map T has eigenvalues 0.8·(1 − 0.5·m) for m ∈ {6, 1.5, 0.5}: −1.6 makes
    fixed-point iteration diverge; three distinct eigenvalues make a 3-vector Krylov space exact."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=F64))
    gains = torch.tensor([6.0] * 4 + [1.5] * 4 + [0.5] * 4, dtype=F64)
    oracle = LinearDenoiser(basis @ torch.diag(gains) @ basis.T)
    x_lo = torch.randn(2, 12, generator=g, dtype=F64)
    problem = StepProblem(T=inverse_step_map(oracle, x_lo, 0.2, 1.0), x_lo=x_lo, sigma_lo=0.2, sigma_hi=1.0, y0=x_lo)
    return oracle, problem


def smooth_step():
    """A smooth nonlinear step (no closed form) on a 4-element latent, so GMRES(5) solves each Newton system exactly."""
    def smooth(x, sigma):
        return torch.tanh(1.5 * x) / (1.0 + sigma ** 2) + 0.3 * x.roll(1, -1)

    x_lo = torch.randn(2, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    return StepProblem(T=inverse_step_map(smooth, x_lo, 0.3, 0.9), x_lo=x_lo, sigma_lo=0.3, sigma_hi=0.9, y0=x_lo)


def test_newton_solves_a_step_where_fixed_point_iteration_diverges():
    oracle, p = expanding_linear_step()
    exact = oracle.exact_step_inverse(p.x_lo, p.sigma_lo, p.sigma_hi)
    _, plain = fixed_point_solve(p, lambda *_: None, max_iterations=8, tolerance=0.0)
    assert plain[-1] > 10 * plain[0]  # Picard diverges
    y, trace = newton(p, iterations=2)
    assert torch.allclose(y, exact, atol=1e-8)
    y, trace = newton(p, iterations=3)
    assert torch.allclose(y, exact, atol=1e-12) and min(trace) < 1e-12
    # y0, then per iteration 2-4 JVPs (3 eigenvalues; finite differences cost the 4th digit) and 1 line-search trial
    assert len(trace) <= 15


def test_newton_converges_quadratically_on_a_smooth_nonlinear_step():
    p = smooth_step()
    residuals = [min(newton(p, iterations=k)[1]) for k in range(1, 5)]
    _, picard = fixed_point_solve(p, lambda *_: None, max_iterations=20, tolerance=0.0)
    assert residuals[-1] < 1e-9 < min(picard), (residuals, picard[-1])
    for before, after in zip(residuals, residuals[1:]):  # r_{k+1} ≤ C·r_k²: quadratic, not linear
        assert after < 2.0 * before ** 2, residuals


def test_unregularized_newton_finds_the_exact_root_and_lambda_is_idle_on_a_well_posed_step():
    oracle, p = gaussian_step(0.4, 2.0)
    exact = oracle.exact_step_inverse(p.x_lo, p.sigma_lo, p.sigma_hi)
    root, _ = newton(p, iterations=3, regularization=0.0)
    assert torch.allclose(root, exact, atol=1e-12)
    regularized, _ = newton(p, iterations=3, regularization=0.5)
    assert torch.equal(regularized, root)  # λ applies only where the step is ill-posed


def fold_step():
    """R(y) = y − T(y) = (y − a)² + b elementwise, b > 0: no root, J_R = 2·diag(y − a) singular at the minimum of
    ‖R‖. From y0 = a + 0.01 the Newton step −R/J_R is ≈ −25 per element."""
    a = torch.linspace(-0.5, 0.5, 8, dtype=F64).repeat(2, 1)
    seen = []

    def T(y):
        seen.append(y.clone())
        return y - ((y - a) ** 2 + 0.5)

    x_lo = a + 0.3
    return StepProblem(T=T, x_lo=x_lo, sigma_lo=0.5, sigma_hi=1.0, y0=a + 0.01), seen, a


def test_levenberg_marquardt_keeps_a_fold_bounded():
    p, seen, a = fold_step()
    y, trace = newton(p, iterations=6, regularization=0.1)
    points = torch.stack(seen)
    assert torch.isfinite(points).all() and torch.isfinite(y).all()
    assert float((points - p.x_lo).abs().max()) < 1.0  # every evaluated point stays near where it started
    assert min(trace) < 0.55  # and near the least residual there is (b = 0.5, at y = a)
    seen.clear()
    newton(p, iterations=6, regularization=0.0)
    assert float((torch.stack(seen) - p.x_lo).abs().max()) > 5.0  # without λ the Newton step jumps across the fold


@pytest.mark.parametrize("regularization", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("make", ["fold", "expanding", "gaussian"])
def test_newton_never_ends_worse_than_its_anderson_phase(make, regularization):
    """Per sample, the returned iterate's residual is at most the Anderson phase's best, at any λ: the best iterate is
    kept by the true step residual and a line-search trial that raises it is not accepted."""
    p = {"fold": lambda: fold_step()[0], "expanding": lambda: expanding_linear_step()[1],
         "gaussian": lambda: gaussian_step(0.0413, 0.35)[1]}[make]()
    evaluated = {}

    def T(y):
        mapped = p.T(y)
        for b in range(y.shape[0]):
            evaluated[(b, tuple(mapped[b].flatten().tolist()))] = float(rms(mapped[b:b + 1] - y[b:b + 1]))
        return mapped

    problem = StepProblem(T=T, x_lo=p.x_lo, sigma_lo=p.sigma_lo, sigma_hi=p.sigma_hi, y0=p.y0)
    *_, anderson = fixed_point_solve(p, lambda *_: None, max_iterations=3, tolerance=1e-15, acceleration="anderson",
                                     keep_iterate=True)
    image, _ = newton(problem, iterations=4, regularization=regularization, max_iterations=3)
    returned = torch.tensor([evaluated[(b, tuple(image[b].flatten().tolist()))] for b in range(image.shape[0])])
    assert bool((returned <= anderson).all()), (returned, anderson)


def test_newton_counts_every_evaluation_and_reports_each():
    g = torch.Generator().manual_seed(11)
    mean = torch.randn(1, 4, 6, 6, generator=g, dtype=F64) * 0.5
    oracle = CountingDenoiser(GaussianDataDenoiser(mean, std=0.7))
    x0 = mean + 0.7 * torch.randn(2, 4, 6, 6, generator=g, dtype=F64)
    events = []
    # trigger 0: Newton-Krylov runs at every step that the Anderson phase leaves above the tolerance
    result = rnri_invert(oracle, x0, karras_sigmas(6),
                         RNRIOptions(iterations=2, max_iterations=3, tolerance=1e-12, trigger=0.0),
                         callback=events.append)
    assert result.evaluations == oracle.evaluations == len(events)
    assert any(len(t) > 3 for t in result.residuals)  # Newton-Krylov ran: more than the Anderson phase's 3
    # the trace is the Newton walk's; FixedPoint's walk beside it and the two sampling passes (6 evaluations each,
    # reported at the top step) are the rest
    assert sum(len(t) for t in result.residuals) < result.evaluations - 12
    assert [(e["step"], e["residual"]) for e in events[-12:]] == [(5, 0.0)] * 12
    assert float((sample(oracle.denoiser, result.latent, karras_sigmas(6)) - x0).abs().max()) < 1e-9


def test_newton_default_beats_the_paper_update_at_the_same_step_count():
    g = torch.Generator().manual_seed(5)
    mean = torch.randn(1, 4, 6, 6, generator=g, dtype=F64) * 0.5
    oracle = GaussianDataDenoiser(mean, std=0.7)
    x0 = mean + 0.7 * torch.randn(2, 4, 6, 6, generator=g, dtype=F64)
    sigmas = karras_sigmas(10)
    errors = {update: float((sample(oracle, rnri_invert(oracle, x0, sigmas, RNRIOptions(update)).latent, sigmas)
                             - x0).norm() / x0.norm()) for update in ("newton", "paper")}
    assert errors["newton"] < 1e-3 * errors["paper"], errors


def test_fold_ratio_of_the_first_step_above_zero():
    sigmas = torch.tensor([14.6, 2.0, 0.35, 0.0413, 0.0], dtype=F64)
    assert fold_ratio(sigmas, euler_rule) == pytest.approx((0.35 - 0.0413) / 0.35)
    assert fold_ratio(sigmas, euler_rule) > FOLD_RATIO
    assert fold_ratio(torch.tensor([1.0, 0.0]), euler_rule) is None
    assert fold_ratio(sigmas, lambda hi, lo: (1.0, lo, 0.0)) is None  # LCM lands on D(y): no such step


@pytest.mark.parametrize("oracle_seed", [0, 1])
def test_newton_keeps_per_latent_the_closer_of_its_walk_and_fixed_points(oracle_seed):
    """RNRI newton's seed is, per latent, its Newton walk's seed (the update without FixedPoint's walk beside) or
    FixedPoint's own seed at the same cap and tolerance, whichever the sampler brings back closer to the image: never
    above FixedPoint's round trip."""
    g = torch.Generator().manual_seed(oracle_seed)
    oracle = random_linear_denoiser(12, seed=oracle_seed)
    x0 = torch.randn(4, 12, generator=g, dtype=F64)
    sigmas = karras_sigmas(5)
    options = RNRIOptions(iterations=1, max_iterations=2, tolerance=1e-12, trigger=0.0, krylov=2)
    walk = rnri_invert(oracle, x0, sigmas, RNRIOptions(**{**options.__dict__, "beside_fixed_point": False}))
    fixed = fixed_point_invert(oracle, x0, sigmas, FixedPointOptions(max_iterations=2, tolerance=1e-12))
    kept = rnri_invert(oracle, x0, sigmas, options)
    errors = {name: rms(sample(oracle, result.latent, sigmas) - x0)
              for name, result in (("walk", walk), ("fixed", fixed), ("kept", kept))}
    closer = torch.where((errors["walk"] <= errors["fixed"]).view(-1, 1), walk.latent, fixed.latent)
    assert torch.equal(kept.latent, closer)
    assert bool((errors["kept"] <= errors["fixed"]).all())
    assert not torch.equal(walk.latent, fixed.latent)  # the two walks parted: the choice was made
    print(f"\nkept the Newton walk's seed on {int((errors['walk'] <= errors['fixed']).sum())} of 4 latents")


FLOAT32_FLOOR = 1e-6
"""Round trips this small are float32 rounding through the regeneration (differences below it are noise)."""


def batched(conditionings: list) -> list:
    """One CONDITIONING for a batch, each latent with its own prompt (CLIP-L's tokens and pooled vector)."""
    return [[torch.cat([c[0][0] for c in conditionings]),
             {"pooled_output": torch.cat([c[0][1]["pooled_output"] for c in conditionings])}]]


@pytest.mark.models
@pytest.mark.parametrize("name", ["demo", "second"])
def test_rnri_newton_is_never_worse_than_fixed_point_on_the_trained_models(comfy_inprocess, name):
    """Per latent, RNRI at its defaults regenerates no further from the image than FixedPoint at its defaults (its own
    first phase), and closer on the mean, on both trained models at 4 ddim_uniform steps, cfg 3 (where the Newton phase
    acts most; the green triangle of the demo images ended 15 % above FixedPoint there before RNRI kept the closer of
    its Newton walk's seed and FixedPoint's walk's). Every case of the fidelity bench: bench/results/rnri.md and
    fidelity.md. Solver level, in process, through ComfyUI's CFGGuider on the narrow networks, two held-out images in
    one batch; the regeneration is the solvers' euler (ComfyUI's to float rounding)."""
    import comfy.samplers
    from support.inprocess import import_pack, trained_images, trained_model
    import_pack()
    from seedfinder.nodes import host
    from seedfinder.solvers import FixedPointOptions, RNRIOptions, fixed_point_invert, rnri_invert, sample

    def relative_errors(denoiser, x0, sigmas, result) -> torch.Tensor:
        back = sample(denoiser, result.latent, sigmas)
        return (back - x0).flatten(1).norm(dim=1) / x0.flatten(1).norm(dim=1)

    with torch.inference_mode():
        model, clip, vae = trained_model(name)
        items = trained_images(name, 2)
        latent = vae.encode(torch.stack([torch.from_numpy(image.copy()).float().div(255) for _, image in items]))
        positive = batched([clip.encode_from_tokens_scheduled(clip.tokenize(caption)) for caption, _ in items])
        negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "ddim_uniform", 4).float()
    errors = {}

    def both(denoiser, x0, sigmas, input_scale, callback=None):
        fixed = fixed_point_invert(denoiser, x0, sigmas, FixedPointOptions(), input_scale=input_scale)
        newton = rnri_invert(denoiser, x0, sigmas, RNRIOptions(), input_scale=input_scale)
        errors.update(fixed=relative_errors(denoiser, x0, sigmas, fixed),
                      newton=relative_errors(denoiser, x0, sigmas, newton))
        return newton

    with torch.inference_mode():
        host.run_guided(both, model, host.Prompt(positive, negative, 3.0), {"samples": latent}, sigmas)
    print(f"\n{name}: FixedPoint {errors['fixed'].tolist()}, RNRI {errors['newton'].tolist()}")
    assert bool((errors["newton"] <= errors["fixed"] + FLOAT32_FLOOR).all()), errors
    assert float(errors["newton"].mean()) < float(errors["fixed"].mean()), errors
