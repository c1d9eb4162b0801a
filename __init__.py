"""Seedfinder: find the noise seed a diffusion model would generate an image from (ComfyUI V3 node pack)."""
from .nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
