"""The host adapter inside the test process: progress, schedules, families and input checks."""
import math
from dataclasses import replace

import pytest
import torch
from support.inprocess import import_pack, random_conditioning, tiny_model


@pytest.fixture(scope="module")
def pack():
    return import_pack()


@pytest.fixture(scope="module")
def model(pack):
    with torch.inference_mode():  # ComfyUI's loaders run inside the prompt: the weights are inference tensors
        return tiny_model()


def test_progress_bar_reports_every_step(pack, model):
    import comfy.utils
    from seedfinder.nodes import host
    from seedfinder.solvers import FPI_PAPER, fixed_point_invert
    plain = replace(FPI_PAPER, max_iterations=3, tolerance=0.0)
    events = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: events.append((value, total)))
    try:
        with torch.inference_mode():
            sigmas = host.build_schedule(model, 6, "simple", 1.0, None).sigmas
            latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
            host.run_inversion(lambda *a, **k: fixed_point_invert(*a, plain, **k), model,
                               host.Prompt(random_conditioning(0), None, 1.0), latent, sigmas,
                               host.HandOff("fixed_point"))
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert events[-1] == (6, 6)
    assert sorted({value for value, _ in events}) == list(range(7))


def test_schedule_is_the_tail_of_the_full_schedule(pack, model):
    import comfy.samplers
    from seedfinder.nodes import host
    full = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", 10)
    tail = host.build_schedule(model, 10, "karras", 0.3, None).sigmas
    assert torch.equal(tail, full[-4:].float())
    assert host.build_schedule(model, 10, "karras", 0.01, None).sigmas.numel() == 2  # at least one step
    given = torch.tensor([3.0, 1.0, 0.0])
    assert torch.equal(host.build_schedule(model, 10, "karras", 0.5, given).sigmas, given)


SWEEP_STEPS = [*range(1, 41), 50, 100, 500, 1000]
SWEEP_STRENGTHS = (1.0, 0.75, 0.5, 0.1, 0.02)


def ksampler_advanced_sigmas(model, steps: int, scheduler: str, start_at_step: int, sampler: str = "euler"):
    """The σ's KSamplerAdvanced (add_noise off, euler) walks for these widgets: its own KSampler.sample, with the
    function that would run the sampler replaced by one that records them (None: it returns the latent unchanged)."""
    import comfy.samplers
    seen = []
    original = comfy.samplers.sample
    comfy.samplers.sample = lambda model, noise, positive, negative, cfg, device, sampler, sigmas, *a, **k: (
        seen.append(sigmas.float().cpu()))
    try:
        latent = torch.zeros(1, 4, 8, 8)
        ksampler = comfy.samplers.KSampler(model, steps=steps, device="cpu", sampler=sampler, scheduler=scheduler,
                                           denoise=1.0, model_options=model.model_options)
        ksampler.sample(latent, [], [], 1.0, latent_image=latent, start_step=start_at_step, last_step=10000,
                        force_full_denoise=False)
    finally:
        comfy.samplers.sample = original
    return seen[0] if seen else None


def test_dpm_2_and_uni_pc_invert_the_schedule_ksampler_gives_them(pack, model):
    """KSampler computes steps + 1 σ's for dpm_2 and uni_pc and drops the penultimate: the inverted schedule is
    that one, for every scheduler, at full and partial strength."""
    import comfy.samplers
    from seedfinder.nodes import host
    for sampler in ("dpm_2", "uni_pc", "uni_pc_bh2", "heun"):
        for scheduler in comfy.samplers.SCHEDULER_NAMES:
            for steps, strength in ((4, 1.0), (10, 1.0), (10, 0.5)):
                schedule = host.build_schedule(model, steps, scheduler, strength, None, sampler)
                walked = ksampler_advanced_sigmas(model, steps, scheduler, schedule.start_at_step, sampler)
                assert torch.equal(schedule.sigmas, walked), (sampler, scheduler, steps, strength)


def test_the_latent_route_inverts_exactly_what_ksampler_advanced_samples(pack, model):
    """Every scheduler × steps 1-40, 50, 100, 500, 1000 × five strengths: the inverted schedule is the one
    KSamplerAdvanced walks from the reported start_at_step, also where the scheduler returns more (ddim_uniform) or
    fewer (beta at 500+) steps than asked; where it leaves nothing to invert, the node says so."""
    import comfy.samplers
    from seedfinder.nodes import host
    cases = refused = 0
    for scheduler in comfy.samplers.SCHEDULER_NAMES:
        for steps in SWEEP_STEPS:
            for strength in SWEEP_STRENGTHS:
                start_at_step = steps - max(1, round(steps * strength))
                expected = ksampler_advanced_sigmas(model, steps, scheduler, start_at_step)
                if expected is not None and not torch.isfinite(expected).all():  # kl_optimal at 1 step
                    with pytest.raises(ValueError, match=r"scheduler: .* gives non-finite σ's"):
                        host.build_schedule(model, steps, scheduler, strength, None)
                    refused += 1
                    continue
                if expected is None:
                    with pytest.raises(ValueError, match=r"strength: .* leaves none of it to invert"):
                        host.build_schedule(model, steps, scheduler, strength, None)
                    refused += 1
                    continue
                schedule = host.build_schedule(model, steps, scheduler, strength, None)
                assert schedule.start_at_step == start_at_step
                assert torch.equal(schedule.sigmas, expected), (scheduler, steps, strength)
                cases += 1
    assert cases > 1900 and refused > 0


def test_schedule_errors_are_short_and_name_the_place(pack, model):
    from seedfinder.nodes import host
    rising = torch.linspace(14.6, 0.0, 1001)
    rising[500] = 20.0
    with pytest.raises(ValueError) as caught:
        host.build_schedule(model, 10, "simple", 1.0, rising)
    message = str(caught.value)
    assert "[500]=20" in message and "(1001 values)" in message and len(message) < 300, message
    with pytest.raises(ValueError, match=r"scheduler: expected one of simple, .* got 'bogus'"):
        host.build_schedule(model, 10, "bogus", 1.0, None)


def test_family_and_conditioning_batch(pack, model):
    from seedfinder.nodes import host
    assert host.model_family(model) == "EPS"
    latent = {"samples": torch.zeros(3, 4, 8, 8)}
    host.validate_inputs(model, random_conditioning(0, batch=3), None, 1.0, latent)
    with pytest.raises(ValueError, match=r"positive: expected a conditioning batch of 1 or 3 .* got 2"):
        host.validate_inputs(model, random_conditioning(0, batch=2), None, 1.0, latent)


def test_audio_and_nested_latents_are_refused_naming_the_shapes(pack, model):
    """An audio (3-D) or nested latent (e.g. LTXV's audio + video) is no image or video latent; the message says
    which shapes are taken and what came (ComfyUI cannot even print a nested tensor's shape)."""
    from seedfinder.nodes import host
    expected = r"latent: expected an image latent of shape \(batch, channels, height, width\) or a video latent of " \
               r"shape \(batch, channels, frames, height, width\), got "
    with pytest.raises(ValueError, match=expected + r"shape \(1, 4, 64\); audio \(3-D\) and nested latents"):
        host.validate_inputs(model, random_conditioning(0), None, 1.0, {"samples": torch.zeros(1, 4, 64)})
    nested = torch.nested.nested_tensor([torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 2, 2)])
    with pytest.raises(ValueError, match=expected + r"a nested latent of parts \[\(1, 4, 8, 8\), \(1, 4, 2, 2\)\]"):
        host.validate_inputs(model, random_conditioning(0), None, 1.0, {"samples": nested})


def test_a_video_model_takes_video_latents_and_an_image_model_image_latents(pack, model):
    import comfy.sd
    from seedfinder.nodes import host
    from support import tinymodels
    with torch.inference_mode():
        wan = comfy.sd.load_diffusion_model_state_dict(tinymodels.wan21_state_dicts()[0])
    prompt = random_conditioning(0, tokens=4096)
    host.validate_inputs(wan, prompt, None, 1.0, {"samples": torch.zeros(1, 16, 2, 8, 8)})
    with pytest.raises(ValueError, match=r"latent: this model \(CONST\) takes video latents of shape \(batch, "
                                         r"channels, frames, height, width\), got shape \(1, 16, 8, 8\); encode the "
                                         r"video with this model's VAE"):
        host.validate_inputs(wan, prompt, None, 1.0, {"samples": torch.zeros(1, 16, 8, 8)})
    with pytest.raises(ValueError, match=r"latent: this model \(EPS\) takes image latents .* got shape "
                                         r"\(1, 4, 2, 8, 8\)"):
        host.validate_inputs(model, random_conditioning(0), None, 1.0, {"samples": torch.zeros(1, 4, 2, 8, 8)})


@pytest.mark.parametrize("sampling, family", [("eps", "EPS"), ("v_prediction", "V_PREDICTION"), ("x0", "X0"),
                                                ("lcm", "EPS"), ("img_to_img", "X0")])
def test_family_names_follow_core_model_sampling(pack, model, sampling, family):
    import comfy_extras.nodes_model_advanced as advanced
    from seedfinder.nodes import host
    patched = advanced.ModelSamplingDiscrete().patch(model, sampling, False)[0]
    assert host.model_family(patched) == family


def test_a_sampling_of_unknown_kind_is_refused(pack, model):
    """Another pack's model sampling that is none of core's prediction types: refused, naming what came."""
    import comfy.model_sampling
    from seedfinder.nodes import host

    class ShiftedNoise:
        pass

    class Custom(comfy.model_sampling.ModelSamplingDiscrete, ShiftedNoise):
        pass

    patched = model.clone()
    patched.add_object_patch("model_sampling", Custom(model.model.model_config))
    with pytest.raises(ValueError, match=r"model: expected a model whose sampling is one of ComfyUI's prediction "
                                         r"types \(EDM, .*CONST, COSMOS_RFLOW\), got \['ModelSamplingDiscrete', "
                                         r"'Module', 'ShiftedNoise'\]"):
        host.validate_inputs(patched, random_conditioning(0), None, 1.0, {"samples": torch.zeros(1, 4, 8, 8)})


def test_noise_route_scaling_matches_noise_scaling(pack, model):
    """The NOISE hand-off divides by exactly what KSAMPLER multiplies by (max_denoise or not)."""
    from seedfinder.nodes import host
    from seedfinder.solvers import ddim_invert
    sampling = model.get_model_object("model_sampling")
    for scheduler in ("simple", "ddim_uniform"):
        sigmas = host.build_schedule(model, 4, scheduler, 1.0, None).sigmas
        with torch.inference_mode():
            latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))}
            inversion = host.run_inversion(ddim_invert, model, host.Prompt(random_conditioning(1), None, 1.0), latent,
                                           sigmas, host.HandOff("ddim"))
        sigma = float(sigmas[0])
        expected = math.sqrt(1 + sigma ** 2) if math.isclose(sigma, float(sampling.sigma_max), rel_tol=1e-5) else sigma
        assert torch.allclose(inversion.noise.noise * expected, inversion.result.latent, rtol=1e-5)


def autograd_probe(result_box):
    """A method that takes RNRI's autograd gradient at one step inside ComfyUI, with a finite-difference check.

    F's L1 term has kinks; with s = sgn(y − T(y)) frozen, φ(z) = ⟨s, z − T(z)⟩ + λ·G(z) is smooth and has the
    same gradient at y, so its central difference checks the vector-Jacobian product through the model.
    """
    from seedfinder.solvers import InversionResult, inverse_step_map
    from seedfinder.solvers.rnri import objective_and_gradient, ve_transition_prior

    def probe(denoiser, x0, sigmas, input_scale=None, callback=None):
        T = inverse_step_map(denoiser, x0, 0.5, 1.0)
        mean, variance = ve_transition_prior(x0, 0.5, 1.0)
        y = x0 * 1.05
        _, _, grad = objective_and_gradient(T, y, mean, variance, 0.5, "autograd")
        signs = torch.sign(y - T(y))

        def phi_terms(z):  # summed in float64 after the difference, so float32 rounding does not swamp it
            return (signs * (z - T(z))).double(), (0.5 * 0.5 * (z - mean).pow(2) / variance).double()

        direction = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
        eps = 1e-3  # the random model is strongly curved: 1e-2 leaves a 0.3 % truncation error
        (a1, b1), (a2, b2) = phi_terms(y + eps * direction), phi_terms(y - eps * direction)
        result_box["numeric"] = float(((a1 - a2).sum() + (b1 - b2).sum()) / (2 * eps))
        result_box["analytic"] = float((grad * direction).sum())
        return InversionResult(latent=x0)

    return probe


def test_autograd_gradient_inside_comfyui_matches_finite_differences(pack, model):
    from seedfinder.nodes import host
    from seedfinder.solvers import ModelGradient
    box = {}
    with torch.inference_mode():  # as the executor runs every prompt
        latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))}
        host.run_guided(autograd_probe(box), model, host.Prompt(random_conditioning(2), None, 1.0), latent,
                        torch.tensor([1.0, 0.0]), ModelGradient.VJP)
    assert box["analytic"] == pytest.approx(box["numeric"], rel=1e-3)


def test_inference_weights_need_the_differentiable_clone(pack, model):
    """Without the weight wrappers, ComfyUI's inference-mode weights cannot be saved for backward."""
    from seedfinder.nodes import host
    from seedfinder.solvers import ModelGradient
    with torch.inference_mode():
        latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))}
        with pytest.raises(RuntimeError, match="[Ii]nference tensors"):
            host.run_guided(autograd_probe({}), model, host.Prompt(random_conditioning(2), None, 1.0), latent,
                            torch.tensor([1.0, 0.0]), ModelGradient.NONE)


def test_autograd_keeps_no_copy_of_the_weights_after_the_node(pack, model):
    import gc

    import psutil
    from seedfinder.nodes.invert import RNRIInvert
    weights = {name: p for name, p in model.model.named_parameters()}
    weight_bytes = sum(p.numel() * p.element_size() for p in weights.values())
    process = psutil.Process()

    def run():
        with torch.inference_mode():
            latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))}
            RNRIInvert.execute(model=model, positive=random_conditioning(3), latent=latent, steps=4,
                               scheduler="simple", cfg=1.0, strength=1.0, iterations=2, regularization=0.1,
                               gradient="autograd", sampler="euler", noise_seed=0, update="paper")
        gc.collect()
        return process.memory_info().rss

    warm = run()
    after = max(run() for _ in range(3))
    assert after - warm < 0.25 * weight_bytes
    # the model's own parameters are untouched: the same tensors, still inference tensors
    assert all(p is weights[name] for name, p in model.model.named_parameters())


def test_no_non_finite_output_passes_as_a_result(pack, model):
    """NaN/inf anywhere in a run is an error naming the likely input: the latent (values far outside any VAE's
    range), the model (it returned NaN/inf), or cfg (the solver diverged though the model stayed finite)."""
    from seedfinder.nodes import host
    from seedfinder.solvers import InversionResult, ddim_invert
    sigmas = torch.tensor([1.0, 0.0])
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))}

    def diverging(denoiser, x0, sigmas, **kwargs):
        denoiser(x0, 1.0)
        return InversionResult(latent=x0 * float("inf"), residuals=[[1.0]], evaluations=1)

    broken = model.clone()
    broken.set_model_unet_function_wrapper(lambda apply, args: apply(args["input"], args["timestep"], **args["c"]) *
                                           float("nan"))
    cases = [(diverging, model, latent, r"cfg: the solver diverged to NaN/inf at cfg=1"),
             (ddim_invert, broken, latent, r"model: returned NaN/inf at σ=1 \(cfg=1\)"),
             (ddim_invert, model, {"samples": latent["samples"] * 1e30}, r"latent: values up to \d\.\d+e\+29")]
    for method, patcher, given, message in cases:
        with torch.inference_mode(), pytest.raises(ValueError, match=message):
            host.run_inversion(method, patcher, host.Prompt(random_conditioning(4), None, 1.0), given, sigmas,
                               host.HandOff("probe"))
    with pytest.raises(ValueError, match=r"cfg: expected a finite number, got nan"):
        host.validate_inputs(model, random_conditioning(4), None, float("nan"), latent)
