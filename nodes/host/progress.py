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
