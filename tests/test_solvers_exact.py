"""EDICT and BDIA on oracles (no host): generation ∘ inversion is the identity to floating point."""
import pytest
import torch
from support.oracles import FlowGaussianDataDenoiser, GaussianDataDenoiser, flow_sigmas, karras_sigmas

from solvers import CountingDenoiser, level_scale, to_d, vp_input_scale
from solvers.exact import (
    BDIA_BASES,
    BDIAOptions,
    BDIASamplerOptions,
    EDICTOptions,
    bdia_generate,
    bdia_invert,
    bdia_sample,
    edict_generate,
    edict_invert,
)


def nonlinear(x, sigma):
    """A smooth nonlinear denoiser with no closed-form inverse."""
    return torch.tanh(x) / (1 + sigma ** 2) + 0.1 * x.roll(1, -1) * sigma / (1 + sigma)


def case(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(1, 4, 6, 6, generator=g, dtype=torch.float64) * 0.5
    x0 = mean + 0.7 * torch.randn(2, 4, 6, 6, generator=g, dtype=torch.float64)
    return GaussianDataDenoiser(mean, 0.7), x0.to(dtype)


SCHEDULES = {"karras 10": karras_sigmas(10), "karras 25": karras_sigmas(25),
             "uniform 8": torch.cat([torch.linspace(8, 0.5, 8, dtype=torch.float64),
                                     torch.zeros(1, dtype=torch.float64)])}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("mix", [0.93, 0.8, 1.0])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-3)])
@pytest.mark.parametrize("denoiser", ["gaussian", "nonlinear"])
def test_edict_round_trip_is_exact(schedule, mix, dtype, tolerance, denoiser):
    oracle, x0 = case(dtype)
    model = oracle if denoiser == "gaussian" else nonlinear
    sigmas = SCHEDULES[schedule].to(dtype)
    if mix == 1.0 and dtype == torch.float32:
        tolerance = 1e-2  # without mixing nothing keeps x and y together, and float32 round-off grows unchecked
    result = edict_invert(model, x0, sigmas, EDICTOptions(mix, "float64" if dtype == torch.float64 else "float32"))
    assert result.evaluations == 2 * (len(sigmas) - 1)
    x, _ = edict_generate(model, result.latent, result.extras["partner"], sigmas, EDICTOptions(mix))
    assert float((x - x0).norm() / x0.norm()) < tolerance


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("gamma", [0.92, 0.96, 1.0])
@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-3)])
@pytest.mark.parametrize("denoiser", ["gaussian", "nonlinear"])
def test_bdia_round_trip_is_exact(schedule, gamma, dtype, tolerance, denoiser):
    oracle, x0 = case(dtype, seed=1)
    model = oracle if denoiser == "gaussian" else nonlinear
    sigmas = SCHEDULES[schedule].to(dtype)
    result = bdia_invert(model, x0, sigmas, BDIAOptions(gamma, "float64" if dtype == torch.float64 else "float32"))
    assert result.evaluations == len(sigmas) - 1
    x = bdia_generate(model, result.latent, result.extras["partner"], sigmas, BDIAOptions(gamma))
    assert float((x - x0).norm() / x0.norm()) < tolerance


def test_float64_state_is_more_exact_than_float32():
    oracle, x0 = case(torch.float32, seed=2)
    errors = {}
    for precision in ("float32", "float64"):
        result = edict_invert(nonlinear, x0, karras_sigmas(25).float(), EDICTOptions(0.93, precision))
        x, _ = edict_generate(nonlinear, result.latent, result.extras["partner"], karras_sigmas(25).float(),
                              model_dtype=torch.float32)
        errors[precision] = float((x.float() - x0).norm() / x0.norm())
    assert errors["float64"] < errors["float32"], errors


def test_edict_with_mix_one_is_two_uncoupled_euler_samplers_on_the_same_start():
    """p = 1 removes the mixing: x and y are then each moved by directions taken at the other, and from x = y the
    first update is exactly an Euler step (the published update without the averaging layer)."""
    oracle, x0 = case(torch.float64, seed=3)
    sigmas = karras_sigmas(1)
    x, y = edict_generate(oracle, x0, x0.clone(), sigmas, EDICTOptions(1.0))
    euler = x0 + (0 - float(sigmas[0])) * to_d(x0, float(sigmas[0]), oracle(x0, float(sigmas[0])))
    assert torch.allclose(x, euler)
    rescaled = euler * level_scale(vp_input_scale, 0.0, float(sigmas[0]))
    expected_y = x0 + (0 - float(sigmas[0])) * to_d(rescaled, float(sigmas[0]), oracle(rescaled, float(sigmas[0])))
    assert torch.allclose(y, expected_y)


def test_bdia_with_gamma_one_is_the_published_update():
    """γ = 1, VE (c_i = 1 by construction when the input scale is constant): x_{i−1} = x_{i+1} − Φ_{i→i+1}(x_i) +
    Φ_{i→i−1}(x_i), i.e. x_{i+1} + (σ_{i−1} − σ_{i+1})·d(x_i, σ_i)."""
    oracle, x0 = case(torch.float64, seed=4)
    sigmas = torch.tensor([3.0, 2.0, 1.0, 0.0], dtype=torch.float64)
    above, current = x0 * 3, x0 * 2
    out = bdia_generate(oracle, above, current, sigmas, BDIAOptions(1.0), input_scale=lambda s: 1.0)
    d2 = to_d(current, 2.0, oracle(current, 2.0))
    x1 = above + (1.0 - 3.0) * d2
    d1 = to_d(x1, 1.0, oracle(x1, 1.0))
    assert torch.allclose(out, current + (0.0 - 2.0) * d1)


def test_flow_models_round_trip():
    g = torch.Generator().manual_seed(5)
    mean = torch.randn(1, 4, 6, 6, generator=g, dtype=torch.float64) * 0.5
    oracle = FlowGaussianDataDenoiser(mean, 0.7)
    x0 = mean + 0.7 * torch.randn(2, 4, 6, 6, generator=g, dtype=torch.float64)
    sigmas = flow_sigmas(10)[1:]
    flat = lambda s: 1.0  # noqa: E731  (flow models see x unscaled)
    edict = edict_invert(oracle, x0, sigmas, input_scale=flat)
    bdia = bdia_invert(oracle, x0, sigmas, input_scale=flat)
    x, _ = edict_generate(oracle, edict.latent, edict.extras["partner"], sigmas, input_scale=flat)
    assert torch.allclose(x, x0, atol=1e-10)
    assert torch.allclose(bdia_generate(oracle, bdia.latent, bdia.extras["partner"], sigmas, input_scale=flat), x0,
                          atol=1e-10)


@pytest.mark.parametrize("call,message", [
    (lambda: EDICTOptions(mix=0.0), "mix: expected a value in"),
    (lambda: EDICTOptions(mix=1.2), r"\(0, 1\], got 1.2"),
    (lambda: BDIAOptions(gamma=0.0), "gamma: expected a value > 0"),
])
def test_bad_weights(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def sampler_case(steps: int):
    """A Gaussian-data oracle, a Karras schedule and a seed at σ_max, with the exact PF-ODE end point."""
    oracle, _ = case(torch.float64)
    sigmas = karras_sigmas(steps)
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * float(sigmas[0])
    return oracle, sigmas, x, oracle.flow(x, float(sigmas[0]), 0.0)


def base_sampler(step, denoiser, x, sigmas):
    """The stock sampler `step` over the whole schedule."""
    values = sigmas.tolist()
    for hi, lo in zip(values[:-1], values[1:]):
        x = step(denoiser, x, hi, lo)
    return x


@pytest.mark.parametrize("base", list(BDIA_BASES))
def test_bdia_sampler_at_gamma_zero_is_its_base_sampler(base):
    oracle, sigmas, x, _ = sampler_case(10)
    counter = CountingDenoiser(oracle)
    out = bdia_sample(counter, x, sigmas, BDIASamplerOptions(base, 0.0))
    assert torch.equal(out, base_sampler(BDIA_BASES[base][0], oracle, x, sigmas))
    assert counter.evaluations == {"euler": 10, "heun": 19}[base]


def test_bdia_euler_sampler_is_bdia_generation_after_one_ddim_step():
    """BDIA-DDIM from noise (the authors' text-to-image code) is the inverter's coupled generation started from the
    pair (x_N, euler step of x_N)."""
    _, sigmas, x, _ = sampler_case(10)
    first = x + (float(sigmas[1]) - float(sigmas[0])) * to_d(x, float(sigmas[0]), nonlinear(x, float(sigmas[0])))
    assert torch.allclose(bdia_sample(nonlinear, x, sigmas, BDIASamplerOptions("euler", 0.7)),
                          bdia_generate(nonlinear, x, first, sigmas, BDIAOptions(0.7)), rtol=0, atol=1e-12)


# golden: relative distance to the exact PF-ODE end point on the oracle (10 Karras steps, γ = 0.5); the base samplers'
# own distances are the bounds BDIA must beat
BDIA_ORACLE_ERROR = {"euler": (0.038220, 0.137114), "heun": (0.042494, 0.052009)}


@pytest.mark.parametrize("base", list(BDIA_BASES))
def test_bdia_sampler_is_closer_to_the_ode_than_its_base_on_the_oracle(base):
    oracle, sigmas, x, exact = sampler_case(10)
    bdia, stock = (float((bdia_sample(oracle, x, sigmas, BDIASamplerOptions(base, gamma)) - exact).norm()
                         / exact.norm()) for gamma in (0.5, 0.0))
    assert (bdia, stock) == pytest.approx(BDIA_ORACLE_ERROR[base], rel=1e-4)
    assert bdia < stock


def test_bdia_sampler_options_refuse_bad_values():
    with pytest.raises(ValueError, match="base: expected one of euler, heun, got 'dpm'"):
        BDIASamplerOptions(base="dpm")
    with pytest.raises(ValueError, match=r"gamma: expected a value in \[0, 1\], got 1.5"):
        BDIASamplerOptions(gamma=1.5)
