"""A method's descriptor: everything the one invert-node entry point (nodes/common.py `invert_node`) needs to know of
an inverter, so that a node is its schema, its options object and one call."""
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Optional

import torch

from ...solvers import InversionMethod, ModelGradient, Stepping
from .handoff import Inversion
from .report import Trace
from .schedule import Schedule


class Kind(Enum):
    """How a method's seed is regenerated."""
    STEP_SOLVER = "inverts the chosen ComfyUI sampler step by step; that stock sampler regenerates the seed"
    EXACT_PAIR = "an invertible coupled sampler (EDICT, BDIA); its CoupledSampler regenerates the seed exactly"
    OWN_SAMPLER = "the method's own sampling function (FireFlow, RF-Inversion) run as a FunctionSampler"


@dataclass(frozen=True)
class MethodRun:
    """What the host knows of one inversion when a method binds its options: the model, the image latent, the
    schedule, how the chosen sampler steps (euler unless the method is a step solver) and the node's noise seed."""
    model: Any
    latent: dict
    schedule: Schedule
    stepping: Stepping
    noise_seed: int = 0

    @property
    def sigmas(self) -> torch.Tensor:
        return self.schedule.sigmas


def no_notes(options, run: MethodRun) -> list:
    """A method with no warnings of its own about its inputs."""
    return []


def forward_only(options) -> ModelGradient:
    """A method that needs only the model's outputs."""
    return ModelGradient.NONE


def stock_sampler(inversion: Inversion, options, run: MethodRun):
    """A step solver's SAMPLER: ComfyUI's own sampler of the inverted name, with its fixed per-step noises if any."""
    return inversion.noise.regenerating_sampler()


@dataclass(frozen=True)
class MethodSpec:
    """One inverter as the invert-node entry point runs it."""
    name: str
    """The method's name in the node's summary and on its seed."""
    kind: Kind
    trace: Trace
    """What its residual trace measures (and so its round-trip estimate)."""
    bind: Callable[[Any, MethodRun], InversionMethod]
    """bind(options, run): the solver with its options object (and the run's stepping, prior, …) bound, once."""
    sampler: Callable[[Inversion, Any, MethodRun], Any] = stock_sampler
    """sampler(inversion, options, run): the SAMPLER that regenerates the seed."""
    notes: Callable[[Any, MethodRun], list] = no_notes
    """notes(options, run): the method's warnings about these inputs, for the node's summary."""
    gradient: Callable[[Any], ModelGradient] = forward_only
    """gradient(options): what the method asks of the model besides its outputs."""
    flow_only: Optional[str] = None
    """The method's name in the error refusing a model that is not rectified flow, if it is a flow method."""
    named: Optional[Callable[[Any], str]] = None
    """named(options): the run's name instead of `name`, where an option chooses the method (FireFlow's solver)."""

    def title(self, options) -> str:
        """The name of a run with these options."""
        return self.named(options) if self.named is not None else self.name
