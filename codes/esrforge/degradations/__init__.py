"""On-the-fly degradations: registered operations that turn HR patches into realistic LR inputs."""

from . import blur, dlas, groups, jpeg, noise, resize, video
from .base import DEGRADATIONS, Degradation, DegradationOptions, SampleRandom, build_degradation
from .pipeline import DegradationSection, DegradedBatch, Degrader, PairPool, UsmOptions, unsharp_mask

__all__ = [
    "DEGRADATIONS",
    "Degradation",
    "DegradationOptions",
    "DegradationSection",
    "DegradedBatch",
    "Degrader",
    "PairPool",
    "SampleRandom",
    "UsmOptions",
    "blur",
    "build_degradation",
    "dlas",
    "groups",
    "jpeg",
    "noise",
    "resize",
    "unsharp_mask",
    "video",
]
