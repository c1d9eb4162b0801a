"""Progress through ComfyUI's ProgressBar, with an interruption check at every report."""
from typing import Callable

import comfy.model_management
import comfy.utils


def progress_reporter(steps: int) -> Callable[[dict], None]:
    """ProgressBar per step; checks for interruption after every model evaluation."""
    bar = comfy.utils.ProgressBar(steps)

    def on_event(event: dict) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(event["step"], steps)

    return on_event


def iteration_reporter(total: int) -> Callable[[int], None]:
    """ProgressBar over an optimisation's iterations (it stops early), checking for interruption each one."""
    bar = comfy.utils.ProgressBar(total)

    def on_iteration(iteration: int) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(iteration + 1, total)

    return on_iteration


def sampler_progress(callback, preview) -> Callable[[dict], None]:
    """A regenerating sampler's step events to ComfyUI's sampler callback (preview, ProgressBar), checking for
    interruption at every step."""
    def on_event(event: dict) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        if callback is not None:
            callback(event["step"], preview, preview, event["steps"])

    return on_event
