"""Seedfinder: find the noise seed a diffusion model would generate an image from (ComfyUI V3 node pack)."""
from .nodes import comfy_entrypoint

WEB_DIRECTORY = "./web"  # the convergence chart drawn on invert nodes (web/convergence_chart.js)

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
