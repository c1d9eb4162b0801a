"""Prompt-aware adjustment on analytic oracles (no ComfyUI).

Why it helps, on an oracle where it can be explained: with data on a subspace, the denoiser's range is that
subspace, so the last sampler step D(x_1, σ_1) can only output latents on it. A latent with a component off the
subspace (an encoding the model cannot generate) has no exact seed: every inversion's round trip keeps that
component as an error floor. The cycle ends with sampler steps, so its output lies on the subspace: the floor
vanishes, and latents already on the data are left where they are (inverted mode) or moved along the data only.
"""
from dataclasses import replace

import pytest
import torch
from support.oracles import GaussianMixtureDenoiser, karras_sigmas, random_subspace_denoiser

from solvers import FPI_PAPER, ddim_invert, fixed_point_invert, sample
from solvers.prompt_aware import PromptAwareOptions, cycle_schedule, prompt_aware_adjust
from solvers.rnri import RNRIOptions, rnri_invert

F64 = torch.float64
SHAPE = (4, 6, 6)


def subspace_case(offset: float, seed=1):
    oracle = random_subspace_denoiser(SHAPE, rank=40)
    g = torch.Generator().manual_seed(seed)
    on_data = oracle.mean + (0.7 * torch.randn(3, 40, generator=g, dtype=F64) @ oracle.basis.T).view(3, *SHAPE)
    return oracle, on_data + offset * torch.randn(3, *SHAPE, generator=g, dtype=F64)


def adjust(oracle, x, sigmas, mode, depth=2, cycles=1):
    noises = [torch.randn(x.shape, generator=torch.Generator().manual_seed(9 + c), dtype=F64) for c in range(cycles)]
    return prompt_aware_adjust(oracle, x, cycle_schedule(sigmas, depth), PromptAwareOptions(cycles=cycles, mode=mode),
                               noises=noises)


def round_trip(oracle, invert, x, sigmas):
    seed = invert(oracle, x, sigmas).latent
    return float(((sample(oracle, seed, sigmas) - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)).mean())


INVERTERS = {
    "ddim": ddim_invert,
    "fixed_point_5": lambda o, x, s: fixed_point_invert(o, x, s, replace(FPI_PAPER, max_iterations=5, tolerance=0.0)),
    "fixed_point_50": lambda o, x, s: fixed_point_invert(o, x, s, replace(FPI_PAPER, max_iterations=50, tolerance=0.0)),
    "rnri_2": lambda o, x, s: rnri_invert(o, x, s, RNRIOptions(iterations=2)),
}


@pytest.mark.parametrize("mode", ["seeded", "inverted"])
@pytest.mark.parametrize("method", list(INVERTERS))
def test_adjustment_removes_the_unreachable_part_of_the_round_trip_error(mode, method):
    oracle, off_data = subspace_case(offset=0.1)
    sigmas = karras_sigmas(10)
    adjusted = adjust(oracle, off_data, sigmas, mode).latent
    assert float(oracle.off_subspace(adjusted).max()) < 1e-10 < float(oracle.off_subspace(off_data).min())
    before, after = (round_trip(oracle, INVERTERS[method], x, sigmas) for x in (off_data, adjusted))
    assert after < before, (before, after)
    if method == "fixed_point_50":  # an exact step solver: the floor was all of its error
        assert after < 1e-6 < 0.1 < before


@pytest.mark.parametrize("method", list(INVERTERS))
def test_adjustment_does_not_change_the_round_trip_of_latents_on_the_data(method):
    oracle, on_data = subspace_case(offset=0.0)
    sigmas = karras_sigmas(10)
    adjusted = adjust(oracle, on_data, sigmas, "inverted").latent
    assert float((adjusted - on_data).norm() / on_data.norm()) < 1e-3
    before, after = (round_trip(oracle, INVERTERS[method], x, sigmas) for x in (on_data, adjusted))
    assert after == pytest.approx(before, rel=1e-2, abs=1e-8)


def test_adjustment_moves_points_towards_the_data_of_a_mixture():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(2, *SHAPE, generator=g, dtype=F64)
    oracle = GaussianMixtureDenoiser(means, std=0.3)
    between = 0.5 * (means[:1] + means[1:]) + 0.3 * torch.randn(4, *SHAPE, generator=g, dtype=F64)
    sigmas = karras_sigmas(10)
    for mode in ("seeded", "inverted"):
        adjusted = adjust(oracle, between, sigmas, mode, depth=4).latent
        assert (oracle.log_density(adjusted) > oracle.log_density(between)).all()


def test_depth_and_cycles_cost_and_determinism():
    oracle, x = subspace_case(offset=0.1)
    sigmas = karras_sigmas(10)
    assert adjust(oracle, x, sigmas, "seeded", depth=3, cycles=2).evaluations == 6
    assert adjust(oracle, x, sigmas, "inverted", depth=3, cycles=2).evaluations == 12
    for mode in ("seeded", "inverted"):
        assert torch.equal(adjust(oracle, x, sigmas, mode).latent, adjust(oracle, x, sigmas, mode).latent)


@pytest.mark.parametrize("call,message", [
    (lambda s: cycle_schedule(s, 0), "depth: expected 1 … 10"),
    (lambda s: cycle_schedule(s, 11), "got 11"),
    (lambda s: prompt_aware_adjust(lambda x, sigma: x, torch.ones(1, 4), s[-3:]), "noises:"),
    (lambda s: PromptAwareOptions(mode="up"), "mode:"),
])
def test_bad_options_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call(karras_sigmas(10))
