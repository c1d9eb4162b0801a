"""RF-Inversion, FireFlow, RF-Solver and FlowEdit on the exact denoiser of Gaussian data under rectified flow, where
the probability-flow ODE is linear and its fine-step solution is the reference."""
import pytest
import torch
from support.oracles import FlowGaussianDataDenoiser, flow_sigmas

from solvers import (
    CountingDenoiser,
    FlowEditOptions,
    FlowSolverOptions,
    RFInversionOptions,
    ddim_invert,
    eta_schedule,
    flow_edit,
    flow_solver_invert,
    flow_solver_sample,
    rf_inversion_invert,
    rf_inversion_sample,
    rms,
    sample,
)

SHAPE = (2, 4, 6, 6)
ONE = {"input_scale": lambda s: 1.0}


def gaussian(dtype=torch.float64, mean_seed=0):
    generator = torch.Generator().manual_seed(mean_seed)
    mean = torch.randn(SHAPE, generator=generator, dtype=dtype) * 0.5
    x0 = mean + 0.6 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return FlowGaussianDataDenoiser(mean, 0.6), x0


def noise(seed=7, dtype=torch.float64):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_rf_inversion_at_gamma_0_is_ddim_inversion_exactly():
    oracle, x0 = gaussian()
    sigmas = flow_sigmas(10)
    controlled = rf_inversion_invert(oracle, x0, sigmas, RFInversionOptions(gamma=0.0), **ONE)
    plain = ddim_invert(oracle, x0, sigmas, **ONE)
    assert torch.equal(controlled.latent, plain.latent)
    assert controlled.residuals == plain.residuals and controlled.evaluations == plain.evaluations == 10


def test_rf_inversion_at_gamma_1_ends_on_the_target_noise():
    oracle, x0 = gaussian()
    target = noise()
    result = rf_inversion_invert(oracle, x0, flow_sigmas(10), RFInversionOptions(gamma=1.0), target_noise=target,
                                 **ONE)
    assert torch.allclose(result.latent, target, atol=1e-12)


def test_rf_inversion_gamma_moves_the_seed_toward_the_target_noise():
    oracle, x0 = gaussian()
    target = noise()
    distances = [float(rms(rf_inversion_invert(oracle, x0, flow_sigmas(10), RFInversionOptions(gamma=g),
                                               target_noise=target, **ONE).latent - target).max())
                 for g in (0.0, 0.3, 0.6, 0.9)]
    assert distances == sorted(distances, reverse=True)


def test_rf_inversion_sampling_at_eta_0_is_euler_exactly():
    oracle, x0 = gaussian()
    sigmas, start = flow_sigmas(8), noise()
    controlled = rf_inversion_sample(oracle, start, sigmas, reference=x0, etas=eta_schedule(8, 0.0, 0, 8))
    assert torch.equal(controlled, sample(oracle, start, sigmas))


def test_rf_inversion_sampling_at_eta_1_lands_on_the_reference():
    oracle, x0 = gaussian()
    landed = rf_inversion_sample(oracle, noise(), flow_sigmas(8), reference=x0, etas=eta_schedule(8, 1.0, 0, 8))
    assert torch.allclose(landed, x0, atol=1e-12)


def test_eta_acts_only_between_start_and_stop():
    assert eta_schedule(6, 0.8, 1, 3) == [0.0, 0.8, 0.8, 0.0, 0.0, 0.0]
    oracle, x0 = gaussian()
    with pytest.raises(ValueError, match="etas: expected one η per step"):
        rf_inversion_sample(oracle, noise(), flow_sigmas(4), reference=x0, etas=[0.5])


def test_rf_inversion_refuses_a_missing_or_misshapen_target():
    oracle, x0 = gaussian()
    with pytest.raises(ValueError, match="target_noise: RF-Inversion with gamma > 0"):
        rf_inversion_invert(oracle, x0, flow_sigmas(4), RFInversionOptions(gamma=0.5), **ONE)
    with pytest.raises(ValueError, match=r"target_noise: expected the latent's shape \(2, 4, 6, 6\)"):
        rf_inversion_invert(oracle, x0, flow_sigmas(4), RFInversionOptions(gamma=0.5),
                            target_noise=torch.zeros(1, 4, 6, 6), **ONE)
    with pytest.raises(ValueError, match=r"gamma: expected a controller strength in \[0, 1\], got 1.5"):
        rf_inversion_invert(oracle, x0, flow_sigmas(4), RFInversionOptions(gamma=1.5), target_noise=noise(), **ONE)


@pytest.mark.parametrize("solver, evaluations", [("fireflow", lambda n: n + 1), ("rf_solver", lambda n: 2 * n)])
def test_flow_solvers_cost_what_the_papers_say(solver, evaluations):
    oracle, x0 = gaussian()
    counter = CountingDenoiser(oracle)
    seed = flow_solver_invert(counter, x0, flow_sigmas(10), FlowSolverOptions(solver), **ONE)
    assert seed.evaluations == counter.evaluations == evaluations(10)
    counter = CountingDenoiser(oracle)
    flow_solver_sample(counter, seed.latent, flow_sigmas(10), FlowSolverOptions(solver))
    assert counter.evaluations == evaluations(10)


@pytest.mark.parametrize("solver", ["fireflow", "rf_solver"])
def test_flow_solvers_sample_to_second_order(solver):
    oracle, _ = gaussian()
    start = noise()
    # the ODE keeps (x − (1 − σ)·mean)/√((1 − σ)²·std² + σ²) constant: from σ = 1 it ends at mean + std·start
    exact = oracle.mean + oracle.std * start
    errors = {n: float(rms(flow_solver_sample(oracle, start, flow_sigmas(n), FlowSolverOptions(solver))
                           - exact).max())
              for n in (16, 32, 64)}
    euler = {n: float(rms(sample(oracle, start, flow_sigmas(n)) - exact).max()) for n in (16, 32)}
    assert errors[16] / errors[32] > 3.0 and errors[32] / errors[64] > 3.0  # second order: ×4 per halving
    assert euler[16] / euler[32] < 2.5  # Euler is first order
    assert errors[16] < euler[16] / 50


@pytest.mark.parametrize("solver", ["fireflow", "rf_solver"])
def test_flow_solver_round_trip_beats_ddim_inversion(solver):
    oracle, x0 = gaussian()
    sigmas = flow_sigmas(10, shift=1.0)
    seed = flow_solver_invert(oracle, x0, sigmas, FlowSolverOptions(solver), **ONE)
    round_trip = float(rms(flow_solver_sample(oracle, seed.latent, sigmas, FlowSolverOptions(solver)) - x0).max())
    ddim = float(rms(sample(oracle, ddim_invert(oracle, x0, sigmas, **ONE).latent, sigmas) - x0).max())
    assert round_trip < ddim / 10
    # the residuals are an upper estimate of what the round trip loses
    assert sum(min(trace) for trace in seed.residuals) > round_trip


def test_flow_solvers_refuse_an_unknown_solver():
    oracle, x0 = gaussian()
    with pytest.raises(ValueError, match="solver: expected one of fireflow, rf_solver, got 'midpoint'"):
        FlowSolverOptions("midpoint")


def test_flowedit_with_the_source_prompt_as_target_changes_nothing():
    oracle, x0 = gaussian()
    edited = flow_edit(oracle, oracle, x0, flow_sigmas(10), FlowEditOptions(n_max=8, n_avg=2), seed=3)
    assert torch.allclose(edited.latent, x0, rtol=0, atol=1e-12)  # only the rounding of z_source − x_source
    assert edited.evaluations == 2 * 2 * 8 and len(edited.residuals) == 8


def test_flowedit_moves_the_image_toward_the_target_distribution():
    source, x0 = gaussian()
    target, _ = gaussian(mean_seed=9)
    edited = flow_edit(source, target, x0, flow_sigmas(20), FlowEditOptions(n_max=20), seed=0).latent
    shift = target.mean - source.mean
    assert float(rms(edited - (x0 + shift)).max()) < 0.35 * float(rms(shift).max())


def test_flowedit_samples_its_last_n_min_steps_with_the_target():
    source, x0 = gaussian()
    counter = CountingDenoiser(source)
    edited = flow_edit(source, counter, x0, flow_sigmas(10), FlowEditOptions(n_max=6, n_min=2), seed=0)
    assert counter.evaluations == 4 + 2 and edited.evaluations == 2 * 4 + 2
    assert not torch.equal(edited.latent, x0)  # the plain sampling part starts from a noised copy


@pytest.mark.parametrize("options, message", [({"n_max": 11}, r"n_max: expected 1 … 10"),
                                              ({"n_max": 0}, r"n_max: expected 1 … 10"),
                                              ({"n_max": 5, "n_min": 5}, r"n_min: expected 0 ≤ n_min < n_max = 5"),
                                              ({"n_max": 5, "n_avg": 0}, r"n_avg: expected at least 1")])
def test_flowedit_refuses_bad_step_counts(options, message):
    oracle, x0 = gaussian()
    with pytest.raises(ValueError, match=message):
        flow_edit(oracle, oracle, x0, flow_sigmas(10), FlowEditOptions(**options))


@pytest.mark.parametrize("n_min", [0, 2])
def test_flowedit_with_a_mask_keeps_the_source_outside_it(n_min):
    """Blended back to the source's trajectory every step, as ComfyUI's masked sampling: outside the mask the result is
    the source exactly (n_min > 0 too, whose sampling steps keep the noised source there); inside it the edit
    happens."""
    source, x0 = gaussian()
    target, _ = gaussian(mean_seed=9)
    mask = torch.zeros(SHAPE, dtype=torch.float64)
    mask[..., :3] = 1.0
    options = FlowEditOptions(n_max=8, n_min=n_min)
    masked = flow_edit(source, target, x0, flow_sigmas(10), options, seed=0, mask=mask).latent
    unmasked = flow_edit(source, target, x0, flow_sigmas(10), options, seed=0).latent
    assert torch.equal(masked[..., 3:], x0[..., 3:])
    moved = float(rms(masked[..., :3] - x0[..., :3]).max())
    assert moved > 0.1 and moved == pytest.approx(float(rms(unmasked[..., :3] - x0[..., :3]).max()), rel=0.5)


def test_flowedit_is_seeded():
    source, x0 = gaussian()
    target, _ = gaussian(mean_seed=9)
    runs = [flow_edit(source, target, x0, flow_sigmas(10), FlowEditOptions(n_max=8), seed=s).latent for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
