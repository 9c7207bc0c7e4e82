"""Networks: the contract (registry, options, description), generators, discriminators, checkpoint loading.

Every module of this folder is imported here, so a network registers itself by being a file in it.
"""

import importlib
import pkgutil

from .base import NETWORKS, Description, LoadedNetwork, NetworkOptions, build_network
from .checkpoint import CONTAINER_KEYS, load_generator, load_into, read_state_dict, recognise
from .compact import SRVGGNetCompact, SRVGGNetCompactOptions
from .discriminator import (
    VGGDiscriminator,
    VGGDiscriminatorBN,
    VGGDiscriminatorGN,
    VGGDiscriminatorGNOptions,
    VGGDiscriminatorOptions,
)
from .foreign import SpandrelModel, SpandrelOptions
from .layouts import detect_layout, rrdb_fields, to_basicsr_layout
from .rrdb import RRDB, ResidualDenseBlock, RRDBNet, RRDBNetOptions, upsample_plan
from .unet_discriminator import UNetDiscriminatorSN, UNetDiscriminatorSNOptions

__all__ = [
    "CONTAINER_KEYS",
    "NETWORKS",
    "RRDB",
    "Description",
    "LoadedNetwork",
    "NetworkOptions",
    "RRDBNet",
    "RRDBNetOptions",
    "ResidualDenseBlock",
    "SRVGGNetCompact",
    "SRVGGNetCompactOptions",
    "SpandrelModel",
    "SpandrelOptions",
    "UNetDiscriminatorSN",
    "UNetDiscriminatorSNOptions",
    "VGGDiscriminator",
    "VGGDiscriminatorBN",
    "VGGDiscriminatorGN",
    "VGGDiscriminatorGNOptions",
    "VGGDiscriminatorOptions",
    "build_network",
    "detect_layout",
    "load_generator",
    "load_into",
    "read_state_dict",
    "recognise",
    "rrdb_fields",
    "to_basicsr_layout",
    "upsample_plan",
]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
