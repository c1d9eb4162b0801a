"""heun, dpm_2 and the multistep samplers (dpmpp_2m, res_multistep, uni_pc, uni_pc_bh2) as stages: parity with
ComfyUI's own sampler functions, and their inversion on the exact Gaussian-data denoiser (no host)."""
import pytest
import torch
from support.oracles import GaussianDataDenoiser, karras_sigmas

from solvers import (
    STAGE_SAMPLERS,
    FixedPointOptions,
    Stepping,
    ddim_invert,
    fixed_point_invert,
    rnri_invert,
    sample,
    sampler_stepper,
    sampler_stepping,
)

SHAPE = (2, 4, 6, 6)
MULTISTEP = ("dpmpp_2m", "res_multistep", "uni_pc", "uni_pc_bh2")


def case(dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(1, *SHAPE[1:], generator=g, dtype=dtype) * 0.5
    x0 = mean + 0.7 * torch.randn(*SHAPE, generator=g, dtype=dtype)
    return GaussianDataDenoiser(mean, 0.7), x0


class _Wrapped:
    """The model object ComfyUI hands its sampler functions (they read the family from model.inner_model...)."""

    def __init__(self, denoiser):
        import comfy.model_sampling
        self.denoiser = denoiser
        sampling = comfy.model_sampling.EPS()
        self.inner_model = type("Guider", (), {"inner_model": type("Model", (), {"model_sampling": sampling})()})()

    def __call__(self, x, sigma, **kwargs):
        return self.denoiser(x, float(sigma.flatten()[0]))


@pytest.mark.parametrize("steps", [2, 3, 4, 10])
@pytest.mark.parametrize("name", STAGE_SAMPLERS)
def test_sampling_equals_comfyui_to_float_precision(comfy_inprocess, name, steps):
    """`sample` with the sampler's stages walks ComfyUI's own function: float64 to 1e-13 (uni_pc in float32, the
    precision ComfyUI's uni_pc runs its coefficient solves in)."""
    from comfy.extra_samplers import uni_pc
    from comfy.k_diffusion import sampling as k_sampling
    function = {"heun": k_sampling.sample_heun, "dpm_2": k_sampling.sample_dpm_2,
                "dpmpp_2m": k_sampling.sample_dpmpp_2m, "res_multistep": k_sampling.sample_res_multistep,
                "uni_pc": uni_pc.sample_unipc, "uni_pc_bh2": uni_pc.sample_unipc_bh2}[name]
    dtype = torch.float32 if name.startswith("uni_pc") else torch.float64
    oracle, _ = case(dtype)
    sigmas = karras_sigmas(steps, dtype=dtype)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5), dtype=dtype) * float(sigmas[0])
    theirs = function(_Wrapped(oracle), noise.clone(), sigmas.clone(), extra_args={}, disable=True)
    ours = sample(oracle, noise, sigmas, stepper=sampler_stepper(name))
    tolerance = 1e-5 if dtype == torch.float32 else 1e-13
    assert float((ours - theirs).abs().max() / theirs.abs().max()) < tolerance


@pytest.mark.parametrize("name", STAGE_SAMPLERS)
def test_fixed_point_inverts_each_sampler_exactly(name):
    """Solved tightly, the seed regenerates the latent to 1e-9 through the sampler's own steps (4 and 10 steps)."""
    oracle, x0 = case()
    for steps in (4, 10):
        sigmas = karras_sigmas(steps)
        stepper = sampler_stepper(name)
        seed = fixed_point_invert(oracle, x0, sigmas, FixedPointOptions(tolerance=1e-12, max_iterations=100, sweeps=40),
                                  stepping=Stepping(stepper=stepper)).latent
        assert torch.allclose(sample(oracle, seed, sigmas, stepper=stepper), x0, atol=1e-9), (name, steps)


@pytest.mark.parametrize("name", STAGE_SAMPLERS)
def test_defaults_are_far_closer_than_ddim(name):
    """At the node defaults FixedPoint and RNRI newton are ≥ 100× closer than DDIM-style inversion (one sweep, each
    multistep stage as its first-order step), dpmpp_2m and res_multistep at their 4 sweeps (about 8 evaluations per
    step on the demo model) ≥ 10× on this oracle; DDIM costs one evaluation of each stage's map."""
    oracle, x0 = case(seed=1)
    sigmas = karras_sigmas(6)
    stepping = sampler_stepping(name)
    stepper = stepping.stepper

    def error(result):
        return float((sample(oracle, result.latent, sigmas, stepper=stepper) - x0).norm() / x0.norm())

    ddim = ddim_invert(oracle, x0, sigmas, stepping=stepping)
    fixed = fixed_point_invert(oracle, x0, sigmas, stepping=stepping)
    newton = rnri_invert(oracle, x0, sigmas, stepping=stepping)
    closer = 10 if name in ("dpmpp_2m", "res_multistep") else 100
    print(f"\n{name}: DDIM {error(ddim):.3g}, FixedPoint {error(fixed):.3g}, RNRI {error(newton):.3g}")
    assert closer * error(fixed) <= error(ddim) and closer * error(newton) <= error(ddim)
    per_map = {"heun": 2, "dpm_2": 2, "dpmpp_2m": 1, "res_multistep": 1, "uni_pc": 2, "uni_pc_bh2": 2}[name]
    stages = len(ddim.residuals)
    assert stages == (5 if name.startswith("uni_pc") else 6)  # uni_pc's last update shares the stage before it
    # the step onto σ = 0 is a single Euler step for heun and dpm_2
    assert ddim.evaluations == per_map * stages - (name in ("heun", "dpm_2"))
    assert fixed.evaluations == sum(len(trace) for trace in fixed.residuals) * per_map - (
        len(fixed.residuals[0]) if name in ("heun", "dpm_2") else 0)


@pytest.mark.parametrize("name", MULTISTEP)
def test_multistep_sweeps_stop_once_the_trajectory_is_consistent(name):
    """Sweeps stop as soon as one finds every stage within the tolerance at its start: a tighter tolerance takes more
    sweeps and gets closer; a single sweep (first-order history) is far off."""
    oracle, x0 = case(seed=2)
    sigmas = karras_sigmas(5)
    stepper = sampler_stepper(name)
    errors = {}
    for sweeps, tolerance in ((1, 1e-4), (40, 1e-4), (40, 1e-8)):
        result = fixed_point_invert(oracle, x0, sigmas, FixedPointOptions(tolerance=tolerance, max_iterations=50,
                                                                             sweeps=sweeps),
                                    stepping=Stepping(stepper=stepper))
        back = sample(oracle, result.latent, sigmas, stepper=stepper)
        errors[sweeps, tolerance] = (float((back - x0).norm() / x0.norm()), result.evaluations)
    assert errors[40, 1e-8][0] < errors[40, 1e-4][0] < 1e-3 < errors[1, 1e-4][0]
    assert errors[1, 1e-4][1] < errors[40, 1e-4][1] < errors[40, 1e-8][1]


def test_unipc_refuses_a_single_step():
    with pytest.raises(ValueError, match="sigmas: uni_pc needs at least 2 steps"):
        sampler_stepper("uni_pc")(torch.tensor([14.6, 0.0]))
