"""Losses: registered by ``type`` name in :data:`LOSSES`; importing this package registers them all."""

from .base import (
    LOSSES,
    DiscriminatorContext,
    GeneratorContext,
    Loss,
    LossOptions,
    Side,
    build_loss,
)
from .criteria import Criterion, FeatureCriterion, distance
from .gan import GanLoss, GanOptions, bce, discriminator_stats
from .noise import DiscriminatorInputNoise, make_discriminate
from .penalty import GradientPenaltyLoss, GradientPenaltyOptions, gradient_norms
from .perceptual import VGG19_LAYERS, PerceptualLoss, PerceptualOptions, vgg19_layer_names
from .pixel import PixelLoss, PixelOptions
from .translational import TranslationalLoss, TranslationalOptions

__all__ = [
    "LOSSES",
    "VGG19_LAYERS",
    "Criterion",
    "DiscriminatorContext",
    "DiscriminatorInputNoise",
    "FeatureCriterion",
    "GanLoss",
    "GanOptions",
    "GeneratorContext",
    "GradientPenaltyLoss",
    "GradientPenaltyOptions",
    "Loss",
    "LossOptions",
    "PerceptualLoss",
    "PerceptualOptions",
    "PixelLoss",
    "PixelOptions",
    "Side",
    "TranslationalLoss",
    "TranslationalOptions",
    "bce",
    "build_loss",
    "discriminator_stats",
    "distance",
    "gradient_norms",
    "make_discriminate",
    "vgg19_layer_names",
]
