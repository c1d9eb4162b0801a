"""The demo's text encoder: a seeded random CLIP-L (the smoke-test one, seed 20), run as CLIPTextEncode runs it."""
import math

import torch

CLIP_SEED = 20
# Prompts whose embeddings the weight files fingerprint: a CLIP that encodes them differently is not the trained one.
FINGERPRINT_PROMPTS = ("", "a red disc on a blue background", "a green triangle on a black background")
FINGERPRINT_VALUES = 16  # sampled entries per prompt
FINGERPRINT_TOLERANCE = 0.02  # fp16 text-encoder arithmetic differs slightly between devices


def clip_state_dict(seed: int = CLIP_SEED) -> dict:
    """CLIP-L weights, random: sorted keys, matrices N(0, 1/fan_in), 1-D weights 1, biases 0, stored fp16."""
    import comfy.sd1_clip
    meta = comfy.sd1_clip.SDClipModel(device="meta", dtype=torch.float32).transformer.state_dict()
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(meta):
        shape = tuple(meta[key].shape)
        if len(shape) <= 1:
            tensor = torch.ones(shape) if key.endswith("weight") else torch.zeros(shape)
        else:
            tensor = torch.randn(shape, generator=generator, dtype=torch.float32) * (1.0 / math.sqrt(math.prod(shape[1:])))
        out[key] = tensor.to(torch.float16).contiguous()
    return out


def load_clip(state_dict: dict | None = None):
    """A ComfyUI CLIP object as CLIPLoader (type stable_diffusion) builds it from the state dict."""
    import comfy.sd
    return comfy.sd.load_text_encoder_state_dicts([state_dict or clip_state_dict()],
                                                  clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)


def encode(clip, prompt: str) -> torch.Tensor:
    """CLIPTextEncode's conditioning tensor (1, 77, 768) for `prompt`, float32."""
    conditioning = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    return conditioning[0][0].float()


def fingerprint_of(embeddings) -> dict:
    """Mean, std and a fixed sample of entries of each fingerprint prompt's embedding (an iterable of tensors)."""
    out = {}
    for prompt, embedding in zip(FINGERPRINT_PROMPTS, embeddings):
        flat = embedding.flatten().double()
        index = torch.linspace(0, flat.numel() - 1, FINGERPRINT_VALUES).long()
        out[prompt] = [round(flat.mean().item(), 5), round(flat.std().item(), 5),
                       [round(v, 4) for v in flat[index].tolist()]]
    return out


def fingerprint(clip) -> dict:
    """The fingerprint of a loaded CLIP."""
    return fingerprint_of(encode(clip, prompt) for prompt in FINGERPRINT_PROMPTS)


def fingerprint_mismatch(found: dict, expected: dict) -> float:
    """Largest absolute difference between two fingerprints (inf if they cover different prompts)."""
    if found.keys() != expected.keys():
        return math.inf
    worst = 0.0
    for prompt, (mean, std, values) in expected.items():
        other_mean, other_std, other_values = found[prompt]
        worst = max([worst, abs(mean - other_mean), abs(std - other_std),
                     *(abs(a - b) for a, b in zip(values, other_values))])
    return worst


def check_fingerprint(clip, expected: dict) -> None:
    """Raise if `clip` does not encode the fingerprint prompts as the CLIP the demo UNet was trained with."""
    mismatch = fingerprint_mismatch(fingerprint(clip), expected)
    if not mismatch <= FINGERPRINT_TOLERANCE:
        raise ValueError(f"this CLIP is not the demo model's text encoder (fingerprint off by {mismatch:.3g})")
