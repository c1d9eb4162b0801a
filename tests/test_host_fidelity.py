"""Fidelity (PSNR / SSIM) on a real ComfyUI server: its numbers, the VAE bound, the gap, and its refusals."""
import pytest
from conftest import IMAGES
from support.graphs import base_graph, expect_failure
from support.tinymodels import CLIP_FRAMES, VIDEO_CLIPS, WAN21_VAE_FILE

pytestmark = pytest.mark.host


def fidelity_graph(reconstruction: list, vae: bool = True) -> dict:
    graph = base_graph(IMAGES[0])
    graph["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["encode", 0], "vae": ["vae", 0]}}
    graph["other"] = {"class_type": "LoadImage", "inputs": {"image": IMAGES[1]}}
    graph["small"] = {"class_type": "ImageScale", "inputs": {"image": ["image", 0], "upscale_method": "nearest-exact",
                                                             "width": 32, "height": 32, "crop": "disabled"}}
    graph["fidelity"] = {"class_type": "SeedfinderFidelity", "inputs": {
        "source": ["image", 0], "reconstruction": reconstruction, **({"vae": ["vae", 0]} if vae else {})}}
    graph["preview"] = {"class_type": "PreviewAny", "inputs": {"source": ["fidelity", 3]}}
    return graph


def video_fidelity_graph() -> dict:
    """Fidelity of VIDEO_CLIPS[0]'s frames through the Wan 2.1 VAE, with that VAE's bound."""
    graph = fidelity_graph(["decode", 0])
    graph["image"]["inputs"]["image"] = VIDEO_CLIPS[0]
    graph["vae"]["inputs"]["vae_name"] = WAN21_VAE_FILE
    return graph


def report(host, graph) -> dict:
    return host.run(graph)["outputs"]["fidelity"]["seedfinder_fidelity"][0]


def test_fidelity_reads_psnr_ssim_and_the_vae_bound(host):
    identical = report(host, fidelity_graph(["image", 0]))
    assert identical["psnr"] == [100.0] and identical["ssim"][0] == pytest.approx(1.0)
    assert identical["gap_db"] == pytest.approx(identical["vae_bound_psnr"] - 100.0)
    through_vae = report(host, fidelity_graph(["decode", 0]))
    assert through_vae["psnr"][0] == pytest.approx(through_vae["vae_bound_psnr"], abs=1e-3)  # it is the bound
    assert through_vae["gap_db"] == pytest.approx(0.0, abs=1e-3)
    other = report(host, fidelity_graph(["other", 0], vae=False))
    assert other["psnr"][0] < 40 and other["ssim"][0] < 0.99 and "vae_bound_psnr" not in other


def test_fidelity_refuses_images_of_another_size(host):
    expect_failure(host, fidelity_graph(["small", 0]), "reconstruction:", "64×64", "got 32×32")


def test_fidelity_on_a_video_compares_frame_by_frame(host):
    """A clip's frames (LoadImage of an animated WEBP) through the Wan 2.1 VAE: one PSNR and SSIM per frame, and the
    VAE bound is the clip's own round trip."""
    graph = video_fidelity_graph()
    clip = report(host, graph)
    assert len(clip["psnr"]) == len(clip["ssim"]) == CLIP_FRAMES
    assert sum(clip["psnr"]) / CLIP_FRAMES == pytest.approx(clip["vae_bound_psnr"], abs=1e-3)
    graph["four"] = {"class_type": "ImageFromBatch", "inputs": {"image": ["image", 0], "batch_index": 0, "length": 4}}
    graph["fidelity"]["inputs"].update(source=["four", 0], reconstruction=["four", 0])
    expect_failure(host, graph, "vae:", "gives 1 frames", "source of 4", "1 + 4k frames")


def spoiled(graph: dict, spoil: str, image: list) -> list:
    """A test-only node's spoiled copy of `image` (testkit SeedfinderTestSpoiledImage): its output."""
    graph[f"spoiled_{spoil}"] = {"class_type": "SeedfinderTestSpoiledImage", "inputs": {"image": image,
                                                                                       "spoil": spoil}}
    return [f"spoiled_{spoil}", 0]


def measuring(source_spoil: str = None, reconstruction_spoil: str = None, vae: bool = True) -> dict:
    """Fidelity of the image against itself, either side spoiled."""
    graph = fidelity_graph(["image", 0], vae=vae)
    for side, spoil in (("source", source_spoil), ("reconstruction", reconstruction_spoil)):
        if spoil:
            graph["fidelity"]["inputs"][side] = spoiled(graph, spoil, ["image", 0])
    return graph


@pytest.mark.parametrize("graph, fragments", [
    (lambda: measuring("nan_pixel"), ("source: expected finite pixel values", "got 3 NaN/inf")),
    (lambda: measuring(None, "nan_pixel"), ("reconstruction: expected finite pixel values", "got 3 NaN/inf")),
    (lambda: measuring("empty", "empty", vae=False), ("source: expected at least one image of at least 1×1",
                                                      "got 1 of 0×0")),
    (lambda: measuring("one_pixel", "one_pixel"), ("source: the vae encodes images of at least 8×8 pixels",
                                                   "got 1×1", "without the vae")),
    (lambda: measuring("greyscale", None), ("reconstruction: expected the source's 1 colour channel(s)", "got 3")),
], ids=["nan_source", "nan_reconstruction", "empty", "one_pixel_with_vae", "greyscale_against_rgb"])
def test_fidelity_names_the_input_it_cannot_measure(host, graph, fragments):
    expect_failure(host, graph(), *fragments)


def test_fidelity_measures_a_single_pixel_without_the_vae_and_warns_on_values_outside_0_1(host):
    single = report(host, measuring("one_pixel", "one_pixel", vae=False))
    assert single["psnr"] == [100.0] and single["ssim"][0] == pytest.approx(1.0) and "warning" not in single
    doubled = report(host, measuring(None, "doubled", vae=False))
    assert doubled["warning"].startswith("reconstruction: pixel values outside [0, 1]")
    assert doubled["text"][-1].startswith("⚠") and "Seedfinder Fidelity: reconstruction: pixel values" in host.log()
