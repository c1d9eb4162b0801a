"""Stochastic samplers (euler_ancestral, lcm) with fixed per-step noises: inversion and ComfyUI parity (no host)."""
from dataclasses import replace

import pytest
import torch
from support.oracles import FlowGaussianDataDenoiser, GaussianDataDenoiser, flow_sigmas, karras_sigmas

from solvers import FPI_PAPER, Noising, Stepping, euler_rule, fixed_point_invert, sample
from solvers.rnri import RNRIOptions, rnri_invert
from solvers.samplers import ancestral_rule, flow_ancestral_rule, lcm_rule, sampler_rule

F64 = torch.float64
SHAPE = (2, 4, 6, 6)
NOISING = {False: Noising.VE, True: Noising.FLOW}
"""The `flow` parameter of these cases as the noising of the family."""


def case(flow: bool, steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(1, *SHAPE[1:], generator=g, dtype=F64) * 0.5
    oracle = (FlowGaussianDataDenoiser if flow else GaussianDataDenoiser)(mean, 0.7)
    x0 = mean + 0.7 * torch.randn(*SHAPE, generator=g, dtype=F64)
    noises = [torch.randn(*SHAPE, generator=g, dtype=F64) for _ in range(steps)]
    return oracle, x0, (flow_sigmas(steps) if flow else karras_sigmas(steps)), noises


@pytest.mark.parametrize("flow", [False, True])
@pytest.mark.parametrize("name", ["euler", "euler_ancestral", "lcm"])
def test_fixed_point_inverts_stochastic_samplers_with_their_fixed_noises(flow, name):
    oracle, x0, sigmas, noises = case(flow, steps=6)
    if flow:
        sigmas = sigmas[1:]  # σ = 1 is a pure-noise level where every latent maps to the same D
    if name == "lcm":
        # An LCM step lands on D(x_hi): inverting it solves D(y) = target, whose fixed-point map contracts only by
        # 1 − ∂D/∂y (0.998 at σ = 14.6 on this oracle), so keep to moderate σ here.
        sigmas = sigmas[sigmas <= (0.8 if flow else 2.0)]
        sigmas = torch.cat([torch.tensor([0.85 if flow else 3.0], dtype=F64), sigmas])
    rule = sampler_rule(name, NOISING[flow])
    result = fixed_point_invert(oracle, x0, sigmas, replace(FPI_PAPER, max_iterations=3000, tolerance=1e-13),
                                stepping=Stepping(rule, noises))
    back = sample(oracle, result.latent, sigmas, rule, noises)
    assert torch.allclose(back, x0, atol=1e-9)
    if name != "euler":  # the noises matter: other noises regenerate another latent
        other = [n.roll(1, 0) for n in noises]
        assert not torch.allclose(sample(oracle, result.latent, sigmas, rule, other), x0, atol=1e-3)


def test_rnri_on_a_four_step_ancestral_schedule():
    oracle, x0, sigmas, noises = case(False, steps=4, seed=1)
    rule = ancestral_rule()
    errors = {}
    for update, iterations in (("paper", 1), ("paper", 2), ("newton", 2)):
        seed = rnri_invert(oracle, x0, sigmas, RNRIOptions(update=update, iterations=iterations),
                           stepping=Stepping(rule, noises)).latent
        errors[update, iterations] = float((sample(oracle, seed, sigmas, rule, noises) - x0).norm() / x0.norm())
    assert errors["newton", 2] < 1e-6 < errors["paper", 2] < errors["paper", 1]


def test_rules_reduce_to_their_definitions():
    assert ancestral_rule(eta=0.0)(2.0, 1.0) == euler_rule(2.0, 1.0)
    a, b, s = ancestral_rule()(2.0, 1.0)
    assert a == 1.0 and b ** 2 + s ** 2 == pytest.approx(1.0) and b == pytest.approx((1.0 * 3.0 / 4.0) ** 0.5)
    assert ancestral_rule()(2.0, 0.0) == (1.0, 0.0, 0.0)  # the last step lands on D
    assert lcm_rule(Noising.VE)(1.0, 0.5) == (1.0, 0.5, 0.0) and lcm_rule(Noising.FLOW)(0.8, 0.5) == (0.5, 0.5, 0.0)
    assert flow_ancestral_rule()(0.5, 0.0) == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="sampler: expected one of"):
        sampler_rule("dpmpp_3m_sde", Noising.VE)


class _Wrapped:
    """The object chain k-diffusion samplers read the model family from (model.inner_model.inner_model...)."""

    def __init__(self, denoiser, sampling):
        self.denoiser = denoiser
        self.inner_model = type("Guider", (), {"inner_model": type("Model", (), {"model_sampling": sampling})()})()

    def __call__(self, x, sigma, **kwargs):
        return self.denoiser(x, float(sigma[0]))


@pytest.mark.parametrize("flow", [False, True])
@pytest.mark.parametrize("name", ["euler_ancestral", "lcm"])
def test_rules_match_comfyui_samplers(comfy_inprocess, flow, name):
    """Our rule-based sampler walks exactly the steps of ComfyUI's k-diffusion function, given the same noises."""
    import comfy.model_sampling
    from comfy.k_diffusion import sampling as k_sampling
    oracle, x0, sigmas, noises = case(flow, steps=5, seed=2)
    sigmas = sigmas[1:] if flow else sigmas
    family = (comfy.model_sampling.CONST if flow else comfy.model_sampling.EPS)()
    steps = {float(s): n for s, n in zip(sigmas[:-1], noises)}
    function = {"euler_ancestral": k_sampling.sample_euler_ancestral, "lcm": k_sampling.sample_lcm}[name]
    theirs = function(_Wrapped(oracle, family), x0.clone(), sigmas, disable=True,
                      noise_sampler=lambda sigma, sigma_next: steps[float(sigma)])
    ours = sample(oracle, x0, sigmas, sampler_rule(name, NOISING[flow]), noises)
    assert torch.allclose(ours, theirs, atol=1e-10)
