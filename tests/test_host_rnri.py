"""RNRI Invert on a real ComfyUI server with the tiny SD1.5-architecture model; RNRI against FixedPoint on the two
trained models, in process."""
import pytest
import torch
from conftest import IMAGES
from support.graphs import expect_failure, round_trip, round_trip_graph

PAPER = {"iterations": 2, "regularization": 0.1, "update": "paper"}
"""The paper's update at its 2 iterations; the gradient is the test's parameter."""


@pytest.mark.host
def test_rnri_newton_round_trips_far_closer_than_ddim(host):
    """The default update: Anderson, then Newton-Krylov where a step stalls; ≥ 10× closer than DDIM at 10 steps, and
    the node warns that the first step above σ = 0 (Δσ/σ_hi ≈ 0.88 on ddim_uniform) is likely a fold."""
    for image in IMAGES[:2]:
        ddim, _ = round_trip(host, "ddim", image)
        newton, info = round_trip(host, "rnri", image)
        assert newton["latent"] == pytest.approx(newton["noise"], rel=1e-2)
        assert newton["latent"] * 10 <= ddim["latent"] and newton["noise"] * 10 <= ddim["noise"]
        assert "fold" in info["warning"] and info["notes"]


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


@pytest.mark.host
@pytest.mark.parametrize("gradient", ["jacobian-free", "autograd"])
def test_rnri_round_trips_through_both_routes(host, gradient):
    """The paper update. Measured (bench/results/rnri.md): at its default 2 iterations RNRI improves on DDIM by 1.2-1.3×
    (jacobian-free) on this model, not by the 10× the issue asks for; autograd's step can overshoot (0.94-1.06×)."""
    options = {**PAPER, "gradient": gradient}
    for image in IMAGES[:2]:
        ddim, _ = round_trip(host, "ddim", image)
        rnri, info = round_trip(host, "rnri", image, options=options)
        assert info["evaluations"] == 20
        assert rnri["latent"] == pytest.approx(rnri["noise"], rel=1e-3)
        assert rnri["latent"] != pytest.approx(ddim["latent"], rel=1e-3)
        if gradient == "jacobian-free":
            assert rnri["latent"] < ddim["latent"] and rnri["noise"] < ddim["noise"]


@pytest.mark.host
def test_rnri_with_cfg_and_negative_prompt(host):
    rnri, info = round_trip(host, "rnri", IMAGES[0], cfg=2.0, use_negative=True)
    ddim, _ = round_trip(host, "ddim", IMAGES[0], cfg=2.0, use_negative=True)
    assert rnri["latent"] < ddim["latent"]


@pytest.mark.host
def test_rnri_bad_inputs(host):
    bad = round_trip_graph("rnri", IMAGES[0], options={"iterations": 0})
    expect_failure(host, bad, "iterations")  # ComfyUI's own range check names the input
    bad = round_trip_graph("rnri", IMAGES[0], options={"regularization": -1.0})
    expect_failure(host, bad, "regularization")
    bad = round_trip_graph("rnri", IMAGES[0], options={"gradient": "numeric"})
    expect_failure(host, bad, "gradient")
    bad = round_trip_graph("rnri", IMAGES[0], options={"update": "broyden"})
    expect_failure(host, bad, "update")
    errors, _ = round_trip(host, "rnri", IMAGES[1])  # and the server still inverts as before
    assert errors["latent"] == pytest.approx(errors["noise"], rel=0.01) and errors["noise"] < 0.05
