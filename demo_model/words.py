"""The DiT twin's text encoder: the demo's seeded random CLIP-L (text.clip_state_dict) whose token-embedding rows for
the caption vocabulary, and whose first position-embedding rows, are replaced by large orthogonal vectors, so each
caption word (and where it stands) dominates the residual stream at its position and survives the random layers.
Loaded by core's CLIPLoader as SD3's text encoder (type sd3, CLIP-L alone: CLIP-G and T5 parts are zeros)."""
import math

import torch

from . import data, text

# The words the captions use ("a {colour} {shape} [and a {colour} {shape}] on a {background} background"), each one
# CLIP token.
VOCABULARY = tuple(dict.fromkeys(("a", "and", "on", "background", *data.COLOURS, *data.BACKGROUNDS, *data.SHAPES)))
ROWS_SEED = 25
# Per-entry RMS of the constructed rows. The random layers add ≈ 3.5 RMS to the residual stream (measured: the
# output RMS of the unchanged CLIP-L); a word at 8 and its position at 4 stay the larger part of their token's output.
WORD_SCALE = 8.0
POSITION_SCALE = 4.0
POSITIONS = 14  # BOS, a two-object caption's 11 words, the first EOS and one more: every position a word can take
TOKEN_KEY = "text_model.embeddings.token_embedding.weight"
POSITION_KEY = "text_model.embeddings.position_embedding.weight"
WIDTH = 768


def token_ids(words=VOCABULARY) -> list:
    """CLIP's token id of each word (every vocabulary word is a single BPE token)."""
    import comfy.sd1_clip
    tokenizer = comfy.sd1_clip.SDTokenizer()
    ids = []
    for word in words:
        tokens = [token for token, _ in tokenizer.tokenize_with_weights(word)[0]
                  if token not in (tokenizer.start_token, tokenizer.end_token)]
        assert len(tokens) == 1, (word, tokens)
        ids.append(tokens[0])
    return ids


def constructed_rows(count: int, seed: int = ROWS_SEED) -> torch.Tensor:
    """`count` orthogonal rows of per-entry RMS 1 (QR of a seeded Gaussian matrix)."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(WIDTH, count, generator=generator, dtype=torch.float64))
    return (q.T * math.sqrt(WIDTH)).float()


def clip_state_dict() -> dict:
    """The twin's CLIP-L: text.clip_state_dict's seeded weights, the vocabulary rows at WORD_SCALE and the first
    POSITIONS position rows at POSITION_SCALE, all mutually orthogonal (fp16 like the rest)."""
    state = text.clip_state_dict(text.CLIP_SEED)
    ids = token_ids()
    rows = constructed_rows(len(ids) + POSITIONS)
    state[TOKEN_KEY] = state[TOKEN_KEY].clone()
    state[TOKEN_KEY][ids] = (WORD_SCALE * rows[:len(ids)]).half()
    state[POSITION_KEY] = state[POSITION_KEY].clone()
    state[POSITION_KEY][:POSITIONS] = (POSITION_SCALE * rows[len(ids):]).half()
    return state


def load_clip(state_dict: dict | None = None):
    """A ComfyUI CLIP object as CLIPLoader (type sd3) builds it from one CLIP-L state dict."""
    import comfy.sd
    return comfy.sd.load_text_encoder_state_dicts([clip_state_dict() if state_dict is None else state_dict],
                                                  clip_type=comfy.sd.CLIPType.SD3)


def encode(clip, prompt: str) -> tuple:
    """CLIPTextEncode's SD3 conditioning for `prompt`: (context (1, 77, 4096), pooled (1, 2048)), float32."""
    conditioning = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    return conditioning[0][0].float(), conditioning[0][1]["pooled_output"].float()


def fingerprint(clip) -> dict:
    """text.fingerprint_of the CLIP-L part of each fingerprint prompt's SD3 context (check with text.check_*)."""
    return text.fingerprint_of(encode(clip, prompt)[0][..., :WIDTH] for prompt in text.FINGERPRINT_PROMPTS)


def check_fingerprint(clip, expected: dict) -> None:
    """Raise if `clip` does not encode the fingerprint prompts as the CLIP the DiT twin was trained with."""
    mismatch = text.fingerprint_mismatch(fingerprint(clip), expected)
    if not mismatch <= text.FINGERPRINT_TOLERANCE:
        raise ValueError(f"this CLIP is not the DiT twin's text encoder (fingerprint off by {mismatch:.3g})")


SEPARATION_PAIRS = {  # captions that differ in one word (or in where two words stand); index: the word's position
    "shape": ("a red disc on a blue background", "a red square on a blue background", 3),
    "colour": ("a red disc on a blue background", "a yellow disc on a blue background", 2),
    "background": ("a red disc on a blue background", "a red disc on a gray background", 6),
    "swapped colours": ("a red disc on a blue background", "a blue disc on a red background", 2),
}


def separation(clip) -> dict:
    """{pair: (cosine of the whole CLIP-L outputs (77×768), cosine at the word's position)}: 1 = not told apart."""
    out = {}
    for name, (first, second, position) in SEPARATION_PAIRS.items():
        a, b = (encode(clip, prompt)[0][0, :, :WIDTH] for prompt in (first, second))
        out[name] = (round(torch.cosine_similarity(a.flatten(), b.flatten(), 0).item(), 3),
                     round(torch.cosine_similarity(a[position], b[position], 0).item(), 3))
    return out
