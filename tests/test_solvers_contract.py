"""The contract every inverter keeps (in the spirit of diffusers' SchedulerCommonTest): a new method is one row in
METHODS. Each runs on the exact Gaussian-data denoiser; what is checked does not depend on how well it inverts."""
from dataclasses import replace
from functools import partial

import pytest
import torch
from support.oracles import GaussianDataDenoiser, karras_sigmas

from solvers import (
    FPI_PAPER,
    CountingDenoiser,
    EDICTOptions,
    FlowSolverOptions,
    RFInversionOptions,
    RNRIOptions,
    Stepping,
    bdia_invert,
    cycle_schedule,
    ddim_invert,
    edict_invert,
    fixed_point_invert,
    flow_solver_invert,
    prompt_aware_adjust,
    rf_inversion_invert,
    rnri_invert,
    sampler_stepper,
)

SHAPE = (2, 4, 4, 4)


def stages(sampler: str) -> Stepping:
    """The stepping of a ComfyUI sampler given as stages."""
    return Stepping(stepper=sampler_stepper(sampler))


def seeded_prompt_aware(denoiser, x0, sigmas, **kwargs):
    """Prompt-Aware Encode's cycle (seeded, depth 2) over the schedule's two smallest steps."""
    noises = [torch.randn(x0.shape, generator=torch.Generator().manual_seed(3), dtype=x0.dtype)]
    return prompt_aware_adjust(denoiser, x0, cycle_schedule(sigmas, 2), noises=noises, **kwargs)


# name: (method, expected steps in the residual trace for a schedule of n steps, the latent's dtype for float32 in)
METHODS = {
    "ddim": (ddim_invert, lambda n: n, torch.float32),
    "fixed_point_default": (fixed_point_invert, lambda n: n, torch.float32),
    "fixed_point_plain": (partial(fixed_point_invert, options=replace(FPI_PAPER, tolerance=0.0, max_iterations=3)),
                          lambda n: n, torch.float32),
    # iterating past float rounding: Anderson's Gram matrix turns singular there and must not produce NaN
    "fixed_point_to_rounding": (partial(fixed_point_invert, options=replace(FPI_PAPER, acceleration="anderson",
                                                                            tolerance=0.0, max_iterations=30)),
                                lambda n: n, torch.float32),
    "rnri_newton": (rnri_invert, lambda n: n, torch.float32),
    "rnri_newton_tight": (partial(rnri_invert, options=RNRIOptions(tolerance=1e-9, iterations=3)), lambda n: n,
                          torch.float32),
    "rnri_paper": (partial(rnri_invert, options=RNRIOptions(update="paper")), lambda n: n, torch.float32),
    "rnri_paper_autograd": (partial(rnri_invert, options=RNRIOptions(update="paper", gradient="autograd")),
                            lambda n: n, torch.float32),
    "edict_float64": (edict_invert, lambda n: n, torch.float64),
    "edict_float32": (partial(edict_invert, options=EDICTOptions(precision="float32")), lambda n: n, torch.float32),
    "bdia_float64": (bdia_invert, lambda n: n, torch.float64),
    "prompt_aware": (seeded_prompt_aware, lambda n: 1, torch.float32),
    "rf_inversion": (partial(rf_inversion_invert, options=RFInversionOptions(gamma=0.5),
                             target_noise=torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))),
                     lambda n: n, torch.float32),
    "fireflow": (flow_solver_invert, lambda n: n, torch.float32),
    "rf_solver": (partial(flow_solver_invert, options=FlowSolverOptions("rf_solver")), lambda n: n, torch.float32),
    # samplers given as stages (docs/methods.md §14): two evaluations per map, and multistep sweeps
    "fixed_point_heun": (partial(fixed_point_invert, options=FPI_PAPER, stepping=stages("heun")), lambda n: n,
                         torch.float32),
    "ddim_dpmpp_2m": (partial(ddim_invert, stepping=stages("dpmpp_2m")), lambda n: n, torch.float32),
    "fixed_point_dpmpp_2m": (partial(fixed_point_invert, stepping=stages("dpmpp_2m")), lambda n: n, torch.float32),
    "rnri_newton_uni_pc": (partial(rnri_invert, stepping=stages("uni_pc")), lambda n: n - 1, torch.float32),
}


def problem(dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(SHAPE, generator=generator, dtype=dtype) * 0.3
    x0 = mean + 0.5 * torch.randn(SHAPE, generator=generator, dtype=dtype)
    return GaussianDataDenoiser(mean, 0.5), x0, karras_sigmas(6, dtype=dtype)


class Stop(Exception):
    pass


@pytest.mark.parametrize("name", list(METHODS))
def test_evaluations_are_counted_and_every_one_is_reported(name):
    method, steps_of, dtype = METHODS[name]
    oracle, x0, sigmas = problem()
    counter, events = CountingDenoiser(oracle), []
    result = method(counter, x0, sigmas, input_scale=lambda s: 1.0, callback=events.append)
    assert result.evaluations == counter.evaluations > 0
    assert len(events) == counter.evaluations
    assert all({"step", "steps", "iteration", "residual"} <= set(event) for event in events)
    assert [event["step"] for event in events] == sorted(event["step"] for event in events)


@pytest.mark.parametrize("name", list(METHODS))
def test_the_callback_stops_the_run_at_once(name):
    method, _, _ = METHODS[name]
    oracle, x0, sigmas = problem()
    counter = CountingDenoiser(oracle)

    def stop_at_the_second(event):
        if counter.evaluations >= 2:
            raise Stop

    with pytest.raises(Stop):
        method(counter, x0, sigmas, input_scale=lambda s: 1.0, callback=stop_at_the_second)
    assert counter.evaluations == 2


@pytest.mark.parametrize("name", list(METHODS))
def test_trace_shape_dtype_and_device(name):
    method, steps_of, dtype = METHODS[name]
    oracle, x0, sigmas = problem()
    result = method(oracle, x0, sigmas, input_scale=lambda s: 1.0, callback=None)
    assert result.latent.shape == x0.shape and result.latent.device == x0.device and result.latent.dtype == dtype
    assert len(result.residuals) == steps_of(len(sigmas) - 1)
    assert all(trace and all(isinstance(r, float) and r == r for r in trace) for trace in result.residuals)
    assert torch.isfinite(result.latent).all()


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("schedule, message", [([1.0, 2.0, 0.0], "strictly decreasing"),
                                               ([2.0, 1.0, 0.5], "ending at 0"),
                                               ([2.0, float("nan"), 0.0], "finite"),
                                               ([0.0], "at least 2 values")])
def test_bad_schedules_are_refused(name, schedule, message):
    method, _, _ = METHODS[name]
    oracle, x0, _ = problem()
    with pytest.raises(ValueError, match=f"sigmas: expected .*{message}"):
        method(oracle, x0, torch.tensor(schedule), input_scale=lambda s: 1.0, callback=None)


@pytest.mark.parametrize("name", list(METHODS))
def test_a_video_latent_inverts_as_the_same_numbers_in_image_shape(name):
    """A video latent (batch, channels, frames, height, width) is the same problem as its frames side by side: every
    norm, residual and solve runs over all non-batch dimensions, so the 5-D seed is the 4-D one reshaped."""
    method, _, _ = METHODS[name]
    oracle, x0, sigmas = problem()
    video = (2, 4, 2, 2, 4)  # SHAPE's 4×4 as 2 frames of 2×4
    image_result = method(oracle, x0, sigmas, input_scale=lambda s: 1.0, callback=None)
    video_oracle = GaussianDataDenoiser(oracle.mean.reshape(video), oracle.std)
    if isinstance(method, partial):  # a latent-shaped option (RF-Inversion's target noise) in the video's shape too
        method = partial(method.func, *method.args, **{key: value.reshape(video) if torch.is_tensor(value) else value
                                                       for key, value in method.keywords.items()})
    video_result = method(video_oracle, x0.reshape(video), sigmas, input_scale=lambda s: 1.0, callback=None)
    assert video_result.latent.shape == video
    assert torch.allclose(video_result.latent.reshape(SHAPE), image_result.latent, rtol=1e-5, atol=1e-6)
    assert [len(trace) for trace in video_result.residuals] == [len(trace) for trace in image_result.residuals]
    assert sum(video_result.residuals, []) == pytest.approx(sum(image_result.residuals, []), rel=1e-4, abs=1e-7)
