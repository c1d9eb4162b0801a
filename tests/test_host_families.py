"""Every inverter on every model family the test host can build, through the matching sampler (real server).

Families are made the way users make them: the tiny SD1.5-architecture UNet with ComfyUI's own model-sampling
patch nodes (ModelSamplingDiscrete v_prediction / lcm, ModelSamplingSD3 for rectified flow), the
SDXL-Turbo setting (euler_ancestral on the 4-step trailing schedule), and the video models (5-D latents) from files
that core's UNETLoader detects as Wan 2.1 and HunyuanVideo.
"""
import copy

import pytest
from conftest import IMAGES, SD3_LATENT, SD3_LATENTS, VIDEO_LATENTS
from support.graphs import only, patch_model, relative_error, rewire, round_trip_graph, saved_latent
from support.tinymodels import CLIP_FRAMES, HUNYUAN_VIDEO_FILE, VIDEO_CLIPS, WAN21_UNET_FILE, WAN21_VAE_FILE

from solvers import RNRIOptions, widgets

pytestmark = pytest.mark.host

FAMILIES = {
    # name: (model patch node or None, sampler, scheduler, steps, routes that can carry the seed)
    "eps": (None, "euler", "ddim_uniform", 10, ("latent", "noise")),
    "v_prediction": ({"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["unet", 0],
                                                                        "sampling": "v_prediction", "zsnr": False}},
                     "euler", "simple", 10, ("latent", "noise")),
    "flow": ({"class_type": "ModelSamplingSD3", "inputs": {"model": ["unet", 0], "shift": 3.0}},
             "euler", "simple", 10, ("noise",)),
    "x0": ({"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["unet", 0], "sampling": "x0", "zsnr": False}},
           "euler", "normal", 10, ("latent", "noise")),
    "edm": ({"class_type": "ModelSamplingContinuousEDM", "inputs": {"model": ["unet", 0], "sampling": "edm",
                                                                    "sigma_max": 14.6, "sigma_min": 0.03}},
            "euler", "karras", 10, ("latent", "noise")),
    "cosmos_rflow": ({"class_type": "ModelSamplingContinuousEDM", "inputs": {
        "model": ["unet", 0], "sampling": "cosmos_rflow", "sigma_max": 14.6, "sigma_min": 0.03}},
        "euler", "karras", 10, ("latent", "noise")),
    "lcm": ({"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["unet", 0], "sampling": "lcm",
                                                               "zsnr": False}},
            "lcm", "sgm_uniform", 4, ("latent", "noise")),
    "turbo": (None, "euler_ancestral", "trailing", 4, ("latent", "noise")),
    "flux_sampling": ({"class_type": "ModelSamplingFlux", "inputs": {"model": ["unet", 0], "max_shift": 1.15,
                                                                     "base_shift": 0.5, "width": 64, "height": 64}},
                      "euler", "simple", 10, ("noise",)),
    # The random tiny SDXL's top steps are not contractive at 10 steps (plain and Anderson iteration stall there);
    # at 20 steps every step converges.
    "sdxl": ("sdxl", "euler", "ddim_uniform", 20, ("latent", "noise")),
    "sdxl_v_prediction": ("sdxl_v", "euler", "simple", 20, ("latent", "noise")),
    # ComfyUI's SD3 model class: MMDiT, 16-channel SD3 latent format (shifted), rectified flow with shift 3
    "sd3": ("sd3", "euler", "simple", 10, ("noise",)),
    # ComfyUI's Flux model class: double/single-stream transformer, Flux latent format, guidance embedding,
    # ModelSamplingFlux's resolution-dependent shift
    "flux": ("flux", "euler", "simple", 10, ("noise",)),
    # Video: 5-D latents (1, 16, 2, 8, 8: 5 frames of 64×64), flow models, sampled from an empty video latent.
    # ComfyUI's Wan 2.1 t2v (WanModel, Wan21 latent format, shift 8) with its VAE encoding a 5-frame clip
    "wan21": ("wan21", "euler", "simple", 10, ("noise",)),
    # ComfyUI's HunyuanVideo (double/single-stream video transformer, HunyuanVideo latent format, shift 7)
    "hunyuan_video": ("hunyuan_video", "euler", "simple", 10, ("noise",)),
}
# An x0-prediction network's last step is x₀ = D(x₁, σ₁). A trained one maps the noisy latent near x₀ (D ≈ identity
# at small σ); a random one has no x₁ with D(x₁) = the image, so no inverter but the exact ones can round-trip it.
RANDOM_X0 = {"x0"}
TESTKIT = {"sdxl": ("SeedfinderTestTinySDXL", None), "sdxl_v": ("SeedfinderTestTinySDXL", None),
           "sd3": ("SeedfinderTestTinySD3", SD3_LATENT), "flux": ("SeedfinderTestTinyFlux", SD3_LATENT)}
# video family: (diffusion model file, pooled width of its prompts, VAE file or None for a latent file)
VIDEO = {"wan21": (WAN21_UNET_FILE, 0, WAN21_VAE_FILE), "hunyuan_video": (HUNYUAN_VIDEO_FILE, 768, None)}
FAMILY_OF = {"flow": "CONST", "flux_sampling": "CONST", "sd3": "CONST", "flux": "CONST", "wan21": "CONST",
             "hunyuan_video": "CONST",
             "v_prediction": "V_PREDICTION", "sdxl_v_prediction": "V_PREDICTION", "x0": "X0", "edm": "EDM",
             "cosmos_rflow": "COSMOS_RFLOW"}
METHODS = {"ddim": {}, "fixed_point": {}, "rnri": widgets(RNRIOptions(update="paper")), "edict": {}, "bdia": {}}
# Video families run RNRI's other update too (the default, newton), so every inverter has met a 5-D latent.
VIDEO_METHODS = {**METHODS, "rnri_newton": widgets(RNRIOptions())}
SECOND = {IMAGES[0]: IMAGES[1], SD3_LATENTS[0]: SD3_LATENTS[1], VIDEO_CLIPS[0]: VIDEO_CLIPS[1],
          VIDEO_LATENTS[0]: VIDEO_LATENTS[1]}


def video_graph(graph: dict, family: str, image: str) -> dict:
    """The round trip on a video model: its file in UNETLoader, prompts of its text encoder's shape, a clip through
    its VAE (or a 5-D latent file) and an empty video latent for the NOISE route."""
    unet_file, pooled, vae_file = VIDEO[family]
    index = IMAGES.index(image) % len(VIDEO_CLIPS)
    graph["unet"]["inputs"]["unet_name"] = unet_file
    del graph["clip"]
    for name in ("pos", "neg"):
        graph[name] = {"class_type": "SeedfinderTestTextEmbedding", "inputs": {
            "text": {"pos": "a photo of a cat", "neg": "blurry"}[name], "width": 4096, "pooled": pooled}}
    if vae_file:
        graph["vae"]["inputs"]["vae_name"] = vae_file
        graph["image"]["inputs"]["image"] = VIDEO_CLIPS[index]
    else:
        graph["load16"] = {"class_type": "LoadLatent", "inputs": {"latent": VIDEO_LATENTS[index]}}
        rewire(graph, ["encode", 0], ["load16", 0])
        del graph["encode"], graph["image"], graph["vae"]
    graph["empty"] = {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64,
                                                                          "length": CLIP_FRAMES, "batch_size": 1}}
    return graph


def family_graph(family: str, method: str, image: str, strength: float = 1.0) -> dict:
    patch, sampler, scheduler, steps, routes = FAMILIES[family]
    stochastic = {} if method in ("edict", "bdia") else {"sampler": sampler, "noise_seed": 7}
    graph = round_trip_graph("rnri" if method == "rnri_newton" else method, image, steps=steps,
                             scheduler="simple" if scheduler == "trailing" else scheduler, strength=strength,
                             options={**VIDEO_METHODS[method], **stochastic})
    if "latent" not in routes and strength == 1.0:  # flow at σ = 1: a LATENT cannot carry the seed
        del graph["ksampler"], graph["save_latent_route"]
    if family in VIDEO:
        return video_graph(graph, family, image)
    if scheduler == "trailing":
        graph["trailing"] = {"class_type": "SeedfinderTrailingScheduler", "inputs": {"model": ["unet", 0],
                                                                                   "steps": steps}}
        graph["invert"]["inputs"]["sigmas"] = ["trailing", 0]
    if isinstance(patch, str):  # ComfyUI's own model class, tiny and in memory, with prompts of its shape
        node, latent_file = TESTKIT[patch]
        graph["tiny"] = {"class_type": node, "inputs": {"seed": 0}}
        for old, new in ((["unet", 0], ["tiny", 0]), (["pos", 0], ["tiny", 1]), (["neg", 0], ["tiny", 2])):
            rewire(graph, old, new)
        if latent_file:  # a 16-channel latent from a file: the test VAE encodes to 4 channels
            graph["load16"] = {"class_type": "LoadLatent", "inputs": {"latent": latent_file}}
            rewire(graph, ["encode", 0], ["load16", 0])
        if patch == "flux":  # Flux dev is guidance-distilled: cfg 1, guidance set on the prompt by core's node
            graph["guidance"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": ["tiny", 1],
                                                                          "guidance": 3.5}}
            rewire(graph, ["tiny", 1], ["guidance", 0], skip="guidance")
        if patch == "sdxl_v":
            patch = FAMILIES["v_prediction"][0]
            return rewire(patch_model(graph, {**patch, "inputs": {**patch["inputs"], "model": ["tiny", 0]}}),
                          ["tiny", 0], ["patched", 0], skip="patched")
        return graph
    return patch_model(graph, patch) if patch else graph


def add_interpolation(graph: dict) -> dict:
    """A second image inverted like the first, Seed Interpolate (NAO, 3 frames) between the two seeds, the frames
    sampled through its sampler output (per-frame fixed noises for lcm and euler_ancestral) and sigmas, and the
    second seed regenerated alone."""
    if graph["invert"]["inputs"]["latent"] == ["load16", 0]:
        graph["latent_b"] = {"class_type": "LoadLatent", "inputs": {
            "latent": SECOND[graph["load16"]["inputs"]["latent"]]}}
    else:
        graph["image_b"] = {"class_type": "LoadImage", "inputs": {"image": SECOND[graph["image"]["inputs"]["image"]]}}
        graph["latent_b"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["image_b", 0], "vae": ["vae", 0]}}
    graph["invert_b"] = copy.deepcopy(graph["invert"])
    graph["invert_b"]["inputs"]["latent"] = ["latent_b", 0]
    if "noise_seed" in graph["invert_b"]["inputs"]:  # other fixed noises: the frames' noises must follow the seeds
        graph["invert_b"]["inputs"]["noise_seed"] = 8
    graph["interpolate"] = {"class_type": "SeedfinderSeedInterpolate", "inputs": {
        "seed_a": ["invert", 1], "seed_b": ["invert_b", 1], "frames": 3, "method": "nao"}}
    graph["custom_b"] = copy.deepcopy(graph["custom"])
    rewire({"custom_b": graph["custom_b"]}, ["invert", 1], ["invert_b", 1])
    rewire({"custom_b": graph["custom_b"]}, ["invert", 3], ["invert_b", 3])  # b's own fixed noises
    graph["empty_frames"] = copy.deepcopy(graph["empty"])  # an empty image or video latent of 3
    graph["empty_frames"]["inputs"]["batch_size"] = 3
    graph["frames"] = copy.deepcopy(graph["custom"])
    graph["frames"]["inputs"].update(noise=["interpolate", 1], sigmas=["interpolate", 2], sampler=["interpolate", 3],
                                     latent_image=["empty_frames", 0])
    for name in ("custom_b", "frames"):
        graph[f"save_{name}"] = {"class_type": "SaveLatent", "inputs": {"samples": [name, 0],
                                                                         "filename_prefix": f"latents/{name}"}}
    return graph


def check_interpolation(host, history: dict, family: str) -> None:
    """The batch's end frames regenerate what each seed does alone; the middle frame is neither."""
    frames = saved_latent(host, history, "save_frames")
    alone = {0: saved_latent(host, history, "save_noise_route"), 2: saved_latent(host, history, "save_custom_b")}
    assert frames.shape[0] == 3
    for index, single in alone.items():
        assert relative_error(frames[index:index + 1], single) < 1e-3, (family, index)
        assert relative_error(frames[1:2], single) > 0.05, (family, index)


def measure(host, family, method, image, strength=1.0, interpolate=False):
    graph = family_graph(family, method, image, strength)
    history = host.run(add_interpolation(graph) if interpolate else graph)
    if interpolate:
        check_interpolation(host, history, family)
    encoded = saved_latent(host, history, "save_encoded")
    assert encoded.ndim == (5 if family in VIDEO else 4), (family, encoded.shape)
    routes = FAMILIES[family][4] if strength == 1.0 else ("latent", "noise")
    info = history["outputs"]["invert"]["seedfinder"][0]
    return {route: relative_error(saved_latent(host, history, f"save_{route}_route"), encoded)
            for route in routes}, info


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_round_trips(host, family):
    """Every inverter round-trips through the family's sampler; and Seed Interpolate's batch (in the DDIM graph)
    hands off like an invert node on this family."""
    methods = VIDEO_METHODS if family in VIDEO else METHODS
    rows = {method: measure(host, family, method, IMAGES[0], interpolate=method == "ddim") for method in methods}
    for errors, info in rows.values():
        assert info["family"] == FAMILY_OF.get(family, "EPS")
        for route in errors:  # both routes hand the same seed to the same sampler (up to float rounding, which
            # the random tiny SDXL's expanding top steps amplify to ~1 %)
            assert errors[route] == pytest.approx(next(iter(errors.values())), rel=0.05)
    # FixedPoint is ≥ 10× closer than DDIM on every family. RNRI at its default 2 iterations is measured for the
    # matrix (python -m bench.host families) but not asserted against DDIM: it is within ±10 % of DDIM on several
    # families here.
    # EDICT and BDIA regenerate with their own coupled (Euler-based) samplers: exact on every family.
    ddim, fixed = rows["ddim"][0], rows["fixed_point"][0]
    for route in ddim:
        assert rows["edict"][0][route] <= 1e-6 and rows["bdia"][0][route] <= 1e-6
        if family in RANDOM_X0:
            continue
        assert fixed[route] * 10 <= ddim[route], (family, route, ddim, fixed)
    if family in RANDOM_X0:  # the σ₁ → 0 step is x₀ = D(x₁): its residual stalls, every other step converges
        last_step, *others = rows["fixed_point"][1]["residuals"]
        assert min(last_step) > 0.1 and max(min(trace) for trace in others) < 1e-3


def test_flow_partial_inversion_uses_both_routes(host):
    errors, info = measure(host, "flow", "fixed_point", IMAGES[1], strength=0.5)
    ddim, _ = measure(host, "flow", "ddim", IMAGES[1], strength=0.5)
    assert info["sigmas"][0] < 1.0
    for route in ("latent", "noise"):
        assert errors[route] * 10 <= ddim[route]


SCHEDULES = ("normal", "exponential", "user_sigmas")


def schedule_round_trips(host, scheduler: str) -> dict:
    """{method: NOISE-route round trip} of DDIM and FixedPoint on IMAGES[2] at 20 steps of `scheduler` (user_sigmas: a
    KarrasScheduler's SIGMAS given to the node)."""
    rows = {}
    for method in ("ddim", "fixed_point"):
        graph = round_trip_graph(method, IMAGES[2], steps=20, scheduler="simple" if scheduler == "user_sigmas"
                                 else scheduler)
        if scheduler == "user_sigmas":
            graph["user"] = {"class_type": "KarrasScheduler", "inputs": {"steps": 20, "sigma_max": 9.0,
                                                                         "sigma_min": 0.05, "rho": 5.0}}
            graph["invert"]["inputs"]["sigmas"] = ["user", 0]
        history = host.run(only(graph, "save_encoded", "save_noise_route"))
        encoded = saved_latent(host, history, "save_encoded")
        rows[method] = relative_error(saved_latent(host, history, "save_noise_route"), encoded)
    return rows


@pytest.mark.parametrize("scheduler", SCHEDULES)
def test_schedules_round_trip_consistently(host, scheduler):
    """Off-table σ's (exponential, a user SIGMAS) are snapped to timesteps the same way in both directions: the
    inversion runs through the sampler's own denoiser, so every schedule round-trips. The family rows cover the
    other schedules: ddim_uniform (ε, SDXL), simple (v, flow, SD3, Flux), sgm_uniform (LCM), karras (EDM, Cosmos
    RFlow), trailing (Turbo). 20 steps: these schedules start at σ_max = 14.6, and at 8 steps their first step is too
    large for the random model's step map to contract (FixedPoint then only reaches 3-12× over DDIM)."""
    rows = schedule_round_trips(host, scheduler)
    assert rows["fixed_point"] * 10 <= rows["ddim"]


PROMPT_AWARE_FAMILIES = ("v_prediction", "flow", "sdxl", "sd3", "flux", "wan21", "hunyuan_video")


def prompt_aware_round_trips(host, family: str) -> dict:
    """{method: round trip to the adjusted latent} of DDIM and FixedPoint after Prompt-Aware Encode (seeded, depth 2)
    on IMAGES[3] in `family`."""
    errors = {}
    for method in ("ddim", "fixed_point"):
        graph = family_graph(family, method, IMAGES[3])
        graph["adjust"] = {"class_type": "SeedfinderPromptAwareEncode", "inputs": {
            "model": graph["invert"]["inputs"]["model"], "positive": graph["invert"]["inputs"]["positive"],
            "latent": graph["invert"]["inputs"]["latent"], "steps": graph["invert"]["inputs"]["steps"],
            "scheduler": graph["invert"]["inputs"]["scheduler"], "cfg": 1.0, "depth": 2, "cycles": 1,
            "mode": "seeded", "seed": 0}}
        graph["invert"]["inputs"]["latent"] = ["adjust", 0]
        graph["save_adjusted"] = {"class_type": "SaveLatent", "inputs": {"samples": ["adjust", 0],
                                                                         "filename_prefix": "latents/adjusted"}}
        history = host.run(only(graph, "save_adjusted", "save_noise_route"))
        errors[method] = relative_error(saved_latent(host, history, "save_noise_route"),
                                        saved_latent(host, history, "save_adjusted"))
    return errors


@pytest.mark.parametrize("family", PROMPT_AWARE_FAMILIES)
def test_prompt_aware_encode_on_every_family(host, family):
    """The adjustment noises with the family's own noise scaling and runs its sampler steps; FixedPoint then
    round-trips the adjusted latent as closely as it does a plain one."""
    errors = prompt_aware_round_trips(host, family)
    assert errors["fixed_point"] * 10 <= errors["ddim"]


def video_centroid(host, family: str) -> tuple:
    """Seed Centroid (normalized mean) of one clip's seed inverted 3 times over (RepeatLatentBatch), regenerated from
    an empty video latent: (the regenerated latent, its round trip to the clip)."""
    graph = family_graph(family, "fixed_point", IMAGES[0])
    graph["batch"] = {"class_type": "RepeatLatentBatch", "inputs": {"samples": graph["invert"]["inputs"]["latent"],
                                                                   "amount": 3}}
    graph["invert"]["inputs"]["latent"] = ["batch", 0]
    graph["centroid"] = {"class_type": "SeedfinderSeedCentroid", "inputs": {"seeds": ["invert", 1],
                                                                           "method": "normalized_mean"}}
    graph["custom"]["inputs"].update(noise=["centroid", 1], sigmas=["centroid", 2], sampler=["centroid", 3])
    history = host.run(graph)
    centroid = saved_latent(host, history, "save_noise_route")
    return centroid, relative_error(centroid, saved_latent(host, history, "save_encoded"))


@pytest.mark.parametrize("family", list(VIDEO))
def test_seed_centroid_of_video_seeds(host, family):
    """Seed Centroid on a batch of 5-D seeds (one clip inverted 3 times over, RepeatLatentBatch): their normalized mean
    is the clip's seed, so it regenerates the clip from an empty video latent as the seed alone does."""
    centroid, error = video_centroid(host, family)
    assert centroid.shape == (1, 16, 2, 8, 8) and error < 1e-3
