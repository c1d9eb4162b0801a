"""Fidelity: how close a reconstruction is to its source, in PSNR and SSIM, against what the VAE alone allows."""
import logging

import torch
from comfy_api.latest import io

from ..solvers.metrics import PSNR_CAP, psnr, ssim
from .common import CATEGORY


def checked_images(source, reconstruction):
    """The pair as comparable batches (RGB, or one channel each): same size and channels, finite; a single source
    broadcasts over a batch of reconstructions."""
    if source.ndim != 4 or reconstruction.ndim != 4:
        raise ValueError(f"reconstruction: expected images of shape (batch, height, width, channels), got "
                         f"{tuple(source.shape)} and {tuple(reconstruction.shape)}")
    for name, image in (("source", source), ("reconstruction", reconstruction)):
        if image.shape[0] < 1 or image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"{name}: expected at least one image of at least 1×1 pixels, got {image.shape[0]} of "
                             f"{image.shape[2]}×{image.shape[1]}")
    if source.shape[1:3] != reconstruction.shape[1:3]:
        raise ValueError(f"reconstruction: expected the source's size {source.shape[2]}×{source.shape[1]}, got "
                         f"{reconstruction.shape[2]}×{reconstruction.shape[1]}; decode the seed's regeneration of "
                         f"this image")
    if source.shape[0] not in (1, reconstruction.shape[0]):
        raise ValueError(f"reconstruction: expected a batch of {source.shape[0]} like the source (or a source of 1), "
                         f"got {reconstruction.shape[0]}")
    source, reconstruction = source[..., :3].float().cpu(), reconstruction[..., :3].float().cpu()
    if source.shape[-1] != reconstruction.shape[-1]:
        raise ValueError(f"reconstruction: expected the source's {source.shape[-1]} colour channel(s), got "
                         f"{reconstruction.shape[-1]}; compare images of the same kind (both RGB, or both greyscale)")
    for name, image in (("source", source), ("reconstruction", reconstruction)):
        if not torch.isfinite(image).all():
            raise ValueError(f"{name}: expected finite pixel values, got {int((~torch.isfinite(image)).sum())} "
                             f"NaN/inf of {image.numel()}")
    return source, reconstruction


def range_warning(source, reconstruction) -> str:
    """A warning when pixel values leave [0, 1] ('' when none do): PSNR and SSIM take 1 as the peak (ComfyUI's IMAGE
    range)."""
    outside = [f"{name} {float(image.min()):.3g} … {float(image.max()):.3g}"
               for name, image in (("source", source), ("reconstruction", reconstruction))
               if float(image.min()) < 0.0 or float(image.max()) > 1.0]
    if not outside:
        return ""
    return (f"{' and '.join(name.split()[0] for name in outside)}: pixel values outside [0, 1] ({'; '.join(outside)}); "
            f"PSNR and SSIM assume images in [0, 1] and misread these. Feed images as VAE Decode and Load Image give "
            f"them")


def vae_round_trip(vae, source):
    """decode(encode(source)) as a batch of frames: a video VAE encodes the batch as one clip and decodes 5-D, which
    core's VAE Decode also flattens into frames."""
    smallest = vae.spacial_compression_encode()
    if min(source.shape[1:3]) < smallest:
        raise ValueError(f"source: the vae encodes images of at least {smallest}×{smallest} pixels, got "
                         f"{source.shape[2]}×{source.shape[1]}; measure without the vae")
    if source.shape[-1] != 3:
        raise ValueError(f"source: the vae encodes RGB images (3 channels), got {source.shape[-1]}; measure without "
                         f"the vae")
    decoded = vae.decode(vae.encode(source))
    frames = decoded.reshape(-1, *decoded.shape[-3:])[..., :3].float().cpu()
    if frames.shape != source.shape:
        raise ValueError(f"vae: decode(encode(source)) gives {frames.shape[0]} frames of {frames.shape[2]}×"
                         f"{frames.shape[1]} for a source of {source.shape[0]} of {source.shape[2]}×{source.shape[1]}; "
                         f"a video VAE takes the frame counts it can encode (Wan: 1 + 4k frames)")
    if not torch.isfinite(frames).all():
        raise ValueError("vae: decode(encode(source)) gave NaN/inf; load the VAE in float32 (a half-precision "
                         "overflow is the usual cause), or measure without it")
    return frames


class Fidelity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SeedfinderFidelity",
            display_name="Fidelity (PSNR / SSIM)",
            category=CATEGORY,
            is_output_node=True,  # a readout: it runs even when nothing takes its numbers
            description="How faithful a reconstruction is: PSNR and SSIM against the source image and, with the VAE, "
                        "the VAE bound (decode(encode(source)): no seed can do better through this VAE) and the gap "
                        "to it in dB. Shown on the node and returned as numbers (batch means). A video compares "
                        "frame by frame (VAE Decode gives its frames as a batch) and its VAE bound is the clip's.",
            inputs=[
                io.Image.Input("source", tooltip="The original image (or a video's frames)."),
                io.Image.Input("reconstruction", tooltip="The decoded regeneration of the seed (same size; a batch "
                               "is compared to one source image each or to a single source)."),
                io.Vae.Input("vae", optional=True, tooltip="The VAE the image was encoded with: gives the VAE bound "
                             "and the gap to it."),
            ],
            outputs=[
                io.Float.Output(display_name="psnr", tooltip=f"PSNR of the reconstruction in dB (identical images: "
                                f"{PSNR_CAP:g})."),
                io.Float.Output(display_name="ssim", tooltip="SSIM of the reconstruction (1 = identical)."),
                io.Float.Output(display_name="vae_bound_psnr", tooltip="PSNR of decode(encode(source)) in dB; 0 when "
                                "no vae is connected."),
                io.Float.Output(display_name="gap_db", tooltip="vae_bound_psnr − psnr: what inversion loses beyond "
                                "the VAE; 0 when no vae is connected."),
            ],
        )

    @classmethod
    def execute(cls, source, reconstruction, vae=None) -> io.NodeOutput:
        source, reconstruction = checked_images(source, reconstruction)
        paired = source.expand(reconstruction.shape[0], *source.shape[1:])
        report = {"psnr": psnr(paired, reconstruction).tolist(), "ssim": ssim(paired, reconstruction).tolist()}
        mean_psnr, mean_ssim = sum(report["psnr"]) / len(report["psnr"]), sum(report["ssim"]) / len(report["ssim"])
        bound = gap = 0.0
        lines = [f"PSNR {mean_psnr:.2f} dB · SSIM {mean_ssim:.4f}"]
        if vae is not None:
            through_vae = vae_round_trip(vae, source)
            bound = float(psnr(source, through_vae).mean())
            gap = bound - mean_psnr
            report.update(vae_bound_psnr=bound, gap_db=gap)
            lines.append(f"VAE bound {bound:.2f} dB · gap {gap:.2f} dB")
        warning = range_warning(source, reconstruction)
        if warning:
            logging.warning("Seedfinder Fidelity: %s", warning)
            report["warning"] = warning
            lines.append("⚠ values outside [0, 1]: PSNR/SSIM misread")
        report["text"] = lines
        return io.NodeOutput(mean_psnr, mean_ssim, bound, gap, ui={"seedfinder_fidelity": [report]})


NODES = [Fidelity]
