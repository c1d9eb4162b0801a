"""The host adapter inside the test process: progress, schedules, families and input checks."""
import math

import pytest
import torch

from inprocess import import_pack, random_conditioning, tiny_model


@pytest.fixture(scope="module")
def pack():
    return import_pack()


@pytest.fixture(scope="module")
def model(pack):
    return tiny_model()


def test_progress_bar_reports_every_step(pack, model):
    import comfy.utils
    from seedfinder.nodes import host
    from seedfinder.solvers import fixed_point_invert
    events = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: events.append((value, total)))
    try:
        with torch.inference_mode():
            sigmas = host.build_schedule(model, 6, "simple", 1.0, None)
            latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
            host.run_inversion(lambda *a, **k: fixed_point_invert(*a, max_iterations=3, tolerance=0.0, **k), model,
                               random_conditioning(0), None, 1.0, latent, sigmas)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert events[-1] == (6, 6)
    assert sorted({value for value, _ in events}) == list(range(7))


def test_schedule_is_the_tail_of_the_full_schedule(pack, model):
    import comfy.samplers
    from seedfinder.nodes import host
    full = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", 10)
    tail = host.build_schedule(model, 10, "karras", 0.3, None)
    assert torch.equal(tail, full[-4:].float())
    assert host.build_schedule(model, 10, "karras", 0.01, None).numel() == 2  # at least one step
    given = torch.tensor([3.0, 1.0, 0.0])
    assert torch.equal(host.build_schedule(model, 10, "karras", 0.5, given), given)


def test_family_and_conditioning_batch(pack, model):
    from seedfinder.nodes import host
    assert host.model_family(model) == "EPS"
    latent = {"samples": torch.zeros(3, 4, 8, 8)}
    host.validate_inputs(model, random_conditioning(0, batch=3), None, 1.0, latent)
    with pytest.raises(ValueError, match=r"positive: expected a conditioning batch of 1 or 3 .* got 2"):
        host.validate_inputs(model, random_conditioning(0, batch=2), None, 1.0, latent)


def test_noise_route_scaling_matches_noise_scaling(pack, model):
    """The NOISE hand-off divides by exactly what KSAMPLER multiplies by (max_denoise or not)."""
    from seedfinder.nodes import host
    from seedfinder.solvers import ddim_invert
    sampling = model.get_model_object("model_sampling")
    for scheduler in ("simple", "ddim_uniform"):
        sigmas = host.build_schedule(model, 4, scheduler, 1.0, None)
        with torch.inference_mode():
            latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))}
            inversion = host.run_inversion(ddim_invert, model, random_conditioning(1), None, 1.0, latent, sigmas)
        sigma = float(sigmas[0])
        expected = math.sqrt(1 + sigma ** 2) if math.isclose(sigma, float(sampling.sigma_max), rel_tol=1e-5) else sigma
        assert torch.allclose(inversion.noise.noise * expected, inversion.result.latent, rtol=1e-5)
