"""Seed Interpolate and Seed Centroid on a real ComfyUI server."""
import pytest
from conftest import IMAGES
from support.graphs import DEFAULT_OPTIONS, ESTIMATE, base_graph, expect_failure, only, relative_error, saved_latent

pytestmark = pytest.mark.host

FIXED_POINT = {"model": ["unet", 0], "positive": ["pos", 0], "steps": 10, "scheduler": "ddim_uniform", "cfg": 1.0,
               "strength": 1.0, "sampler": "euler", "noise_seed": 0, **DEFAULT_OPTIONS["fixed_point"], **ESTIMATE}


def save(graph, name, source):
    graph[f"save_{name}"] = {"class_type": "SaveLatent", "inputs": {"samples": source,
                                                                    "filename_prefix": f"latents/{name}"}}


def sample_both_routes(graph, source, batch, prefix):
    """KSamplerAdvanced on the LATENT output and SamplerCustomAdvanced on the NOISE output of node `source`."""
    graph[f"{prefix}_ksampler"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "model": ["unet", 0], "add_noise": "disable", "noise_seed": 0, "steps": 10, "cfg": 1.0,
        "sampler_name": "euler", "scheduler": "ddim_uniform", "positive": ["pos", 0], "negative": ["neg", 0],
        "latent_image": [source, 0], "start_at_step": 0, "end_at_step": 10000, "return_with_leftover_noise": "disable"}}
    graph[f"{prefix}_empty"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64,
                                                                            "batch_size": batch}}
    graph[f"{prefix}_custom"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": [source, 1], "guider": ["guider", 0], "sampler": ["euler", 0], "sigmas": [source, 2],
        "latent_image": [f"{prefix}_empty", 0]}}
    save(graph, f"{prefix}_latent", [f"{prefix}_ksampler", 0])
    save(graph, f"{prefix}_noise", [f"{prefix}_custom", 0])


def interpolation_graph(method="nao", frames=5) -> dict:
    graph = base_graph(IMAGES[0])
    graph.update({
        "image_b": {"class_type": "LoadImage", "inputs": {"image": IMAGES[1]}},
        "encode_b": {"class_type": "VAEEncode", "inputs": {"pixels": ["image_b", 0], "vae": ["vae", 0]}},
        "invert_a": {"class_type": "SeedfinderFixedPointInvert", "inputs": {**FIXED_POINT, "latent": ["encode", 0]}},
        "invert_b": {"class_type": "SeedfinderFixedPointInvert", "inputs": {**FIXED_POINT, "latent": ["encode_b", 0]}},
        "interpolate": {"class_type": "SeedfinderSeedInterpolate", "inputs": {
            "seed_a": ["invert_a", 1], "seed_b": ["invert_b", 1], "frames": frames, "method": method}},
        "guider": {"class_type": "CFGGuider", "inputs": {"model": ["unet", 0], "positive": ["pos", 0],
                                                         "negative": ["neg", 0], "cfg": 1.0}},
        "euler": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    })
    save(graph, "encoded_b", ["encode_b", 0])
    sample_both_routes(graph, "interpolate", frames, "frames")
    sample_both_routes(graph, "invert_a", 1, "single_a")
    sample_both_routes(graph, "invert_b", 1, "single_b")
    return graph


def test_interpolated_batch_endpoints_match_each_single_round_trip(host):
    history = host.run(interpolation_graph())
    encoded = {"a": saved_latent(host, history, "save_encoded"), "b": saved_latent(host, history, "save_encoded_b")}
    for route in ("latent", "noise"):
        frames = saved_latent(host, history, f"save_frames_{route}")
        assert frames.shape[0] == 5
        for name, index in (("a", 0), ("b", -1)):
            single = saved_latent(host, history, f"save_single_{name}_{route}")
            own, batched = relative_error(single, encoded[name]), relative_error(frames[index:][:1], encoded[name])
            assert batched == pytest.approx(own, rel=0.05, abs=1e-4)
            assert relative_error(frames[index:][:1], single) < 1e-2
        middle = frames[2:3]
        assert relative_error(middle, encoded["a"]) > 0.05 and relative_error(middle, encoded["b"]) > 0.05


def centroid_graph(method: str) -> dict:
    """Seed Centroid of IMAGES[0]'s seed inverted 3 times over (RepeatLatentBatch), regenerated through both routes."""
    graph = base_graph(IMAGES[0])
    graph.update({
        "batch": {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["encode", 0], "amount": 3}},
        "invert": {"class_type": "SeedfinderFixedPointInvert", "inputs": {**FIXED_POINT, "latent": ["batch", 0]}},
        "centroid": {"class_type": "SeedfinderSeedCentroid", "inputs": {"seeds": ["invert", 1], "method": method}},
        "guider": {"class_type": "CFGGuider", "inputs": {"model": ["unet", 0], "positive": ["pos", 0],
                                                         "negative": ["neg", 0], "cfg": 1.0}},
        "euler": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    })
    sample_both_routes(graph, "centroid", 1, "centroid")
    return graph


@pytest.mark.parametrize("method", ["normalized_mean", "nao"])
def test_centroid_of_a_batch_inversion(host, method):
    history = host.run(centroid_graph(method))
    encoded = saved_latent(host, history, "save_encoded")
    # Three copies of one image: their normalized mean is that image's seed, so it regenerates the image as its
    # own round trip does (0.0065). NAO's centroid is pulled 0.1 % toward the χ_d mode, which this random model's
    # sampler amplifies to ~16 % in the latent.
    for route in ("latent", "noise"):
        error = relative_error(saved_latent(host, history, f"save_centroid_{route}"), encoded)
        assert saved_latent(host, history, f"save_centroid_{route}").shape[0] == 1
        assert error < (0.02 if method == "normalized_mean" else 0.5)


def test_seed_nodes_refuse_what_they_cannot_use(host):
    def cheap(graph):  # the refusals do not depend on how well the seeds were found: one iteration per step, and
        # no single seed regenerated
        for name in ("invert_a", "invert_b"):
            graph[name]["inputs"]["max_iterations"] = 1
        return only(graph, "save_frames_noise")

    random_noise = cheap(interpolation_graph(method="slerp"))
    random_noise["random"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}}
    random_noise["interpolate"]["inputs"]["seed_a"] = ["random", 0]
    expect_failure(host, random_noise, "seed_a:", "Seedfinder invert node", "Noise_RandomNoise")
    other_schedule = cheap(interpolation_graph(method="lerp"))
    other_schedule["invert_b"]["inputs"]["steps"] = 8
    expect_failure(host, other_schedule, "seed_b:", "same schedule")
    too_few = interpolation_graph(method="lerp", frames=1)
    expect_failure(host, too_few, "frames")
