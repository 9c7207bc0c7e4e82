"""Networks: the registry, the ESRGAN generator and discriminators, and checkpoint loading."""

from .base import NETWORKS, NetworkOptions, build_network
from .checkpoint import CONTAINER_KEYS, load_generator, load_into, read_state_dict
from .discriminator import (
    VGGDiscriminator,
    VGGDiscriminatorBN,
    VGGDiscriminatorGN,
    VGGDiscriminatorGNOptions,
    VGGDiscriminatorOptions,
)
from .layouts import detect_layout, detect_rrdb, rrdb_options, to_basicsr_layout
from .rrdb import RRDB, ResidualDenseBlock, RRDBNet, RRDBNetOptions, upsample_plan
from .unet_discriminator import UNetDiscriminatorSN, UNetDiscriminatorSNOptions

__all__ = [
    "CONTAINER_KEYS",
    "NETWORKS",
    "RRDB",
    "NetworkOptions",
    "RRDBNet",
    "RRDBNetOptions",
    "ResidualDenseBlock",
    "UNetDiscriminatorSN",
    "UNetDiscriminatorSNOptions",
    "VGGDiscriminator",
    "VGGDiscriminatorBN",
    "VGGDiscriminatorGN",
    "VGGDiscriminatorGNOptions",
    "VGGDiscriminatorOptions",
    "build_network",
    "detect_layout",
    "detect_rrdb",
    "load_generator",
    "load_into",
    "read_state_dict",
    "rrdb_options",
    "to_basicsr_layout",
    "upsample_plan",
]
