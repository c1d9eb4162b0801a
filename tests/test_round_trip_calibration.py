"""The invert nodes' round trip on the two trained models, in process: the step-solver nodes measure it by default
(the stock sampler regenerates the seed), that measurement is the round trip an independent regeneration gives, and
the quality warning judges it, not the first-order estimate, which is far from it where a step's leftover residual is
not what the sampler carries through (DDIM: 14-83× above the measured value, bench/results/calibration.md)."""
import pytest
import torch

pytestmark = pytest.mark.models


def regenerated(model, positive, latent: dict, sigmas) -> torch.Tensor:
    """KSamplerAdvanced's euler with add_noise off from the node's LATENT output, through a CFGGuider at cfg 1."""
    import comfy.samplers
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": positive})
    guider.set_cfg(1.0)
    samples = latent["samples"]
    return guider.sample(torch.zeros_like(samples), samples, comfy.samplers.sampler_object("euler"), sigmas,
                         disable_pbar=True, seed=0)


CASES = (("DDIMInvert", 4), ("DDIMInvert", 20), ("FixedPointInvert", 10))
"""(node, steps): a poor round trip, DDIM's estimate far above its measured value, a good round trip."""


@pytest.mark.parametrize("name", ["demo", "second"])
def test_the_warning_judges_the_measured_round_trip(comfy_inprocess, name):
    """Each node at its defaults reports the round trip an independent regeneration gives and warns exactly when it is
    above the threshold: DDIM at 4 steps (poor: warned), FixedPoint at 10 (good: not warned); DDIM's estimate at 20
    steps is more than 3× its measured round trip (so the node does not judge by it)."""
    from support.inprocess import import_pack, trained_images, trained_model
    import_pack()
    from seedfinder.nodes import invert
    from seedfinder.nodes.host import POOR_ROUND_TRIP
    from seedfinder.solvers import FixedPointOptions, widgets

    with torch.inference_mode():
        model, clip, vae = trained_model(name)
        caption, image = trained_images(name, 1)[0]
        latent = {"samples": vae.encode(torch.from_numpy(image.copy()).float().div(255).unsqueeze(0))}
        positive = clip.encode_from_tokens_scheduled(clip.tokenize(caption))
        reports = {}
        for node, steps in CASES:
            options = widgets(FixedPointOptions()) if node == "FixedPointInvert" else {}
            out = getattr(invert, node).execute(model=model, positive=positive, negative=None, latent=latent,
                                                steps=steps, scheduler="simple", cfg=1.0, strength=1.0,
                                                sampler="euler", noise_seed=0, **options)
            back = regenerated(model, positive, out.args[0], out.args[2])
            independent = float((back - latent["samples"]).norm() / latent["samples"].norm())
            reports[node, steps] = info = out.ui["seedfinder"][0]
            assert info["round_trip_measured"] == pytest.approx(independent, rel=1e-3, abs=1e-6)
            assert ("round trip" in info.get("warning", "")) == (info["round_trip_measured"] > POOR_ROUND_TRIP)
    assert reports["DDIMInvert", 4]["round_trip_measured"] > POOR_ROUND_TRIP
    assert reports["FixedPointInvert", 10]["round_trip_measured"] < POOR_ROUND_TRIP
    assert reports["DDIMInvert", 20]["round_trip_estimate"] > 3 * reports["DDIMInvert", 20]["round_trip_measured"]
