"""The dataset registry and the options of the training and validation datasets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch.utils.data import Dataset

from ..degradations.pipeline import DegradationSection
from ..fields import InputPath, option, require
from ..registry import Registry

DATASETS: Registry[Dataset] = Registry("dataset")


@dataclass(frozen=True, kw_only=True)
class DatasetOptions:
    """Base of every dataset's options: ``type`` names the registered class."""

    registry: ClassVar[Registry[Dataset]] = DATASETS

    type: str = option(doc="registered dataset class, e.g. HRPatchDataset or FullImageDataset")
    name: str = option("", doc="label used in logs and validation folders")
    dataroot: InputPath = option(
        doc="folder of HR images (read through its manifest.jsonl where extract_subimages wrote one), or a "
        "chunk manifest"
    )
    dataroot_lq: InputPath | None = option(
        None, doc="folder of matching LR images; null: LR is made from HR by MATLAB bicubic"
    )


@dataclass(frozen=True, kw_only=True)
class TrainDatasetOptions(DatasetOptions):
    """Random HR patches with LR made on the fly, for training."""

    target_size: int = option(128, doc="HR (GT) patch size in pixels; a multiple of the scale")
    use_flip: bool = option(True, doc="random horizontal flips")
    use_rot: bool = option(True, doc="random vertical flips and 90-degree rotations")
    batch_size: int = option(16, doc="samples per step on each GPU (per process under torchrun)")
    n_workers: int = option(2, doc="DataLoader worker processes per GPU; 0 loads in the main process")
    prefetch_factor: int = option(2, doc="batches each worker loads ahead")
    degradation: DegradationSection | None = option(
        None,
        doc="make the LR on the training device with random blur, resize, noise, JPEG ... (Real-ESRGAN, "
        "DLAS, video codecs); null: MATLAB bicubic downscale (or dataroot_lq)",
    )

    @property
    def crop_size(self) -> int:
        """The HR patch the dataset cuts: ``degradation.patch_size`` when set, else ``target_size``."""
        patch = self.degradation.patch_size if self.degradation is not None else None
        return patch or self.target_size

    def __post_init__(self) -> None:
        require(self.target_size > 0, "target_size", "a positive size", self.target_size)
        if self.degradation is not None:
            require(
                self.dataroot_lq is None,
                "dataroot_lq",
                "null when degradation makes the LR",
                str(self.dataroot_lq),
            )
            require(
                self.crop_size >= self.target_size,
                "degradation.patch_size",
                f"at least target_size {self.target_size}",
                self.crop_size,
            )
        require(self.batch_size > 0, "batch_size", "a positive batch size", self.batch_size)
        require(self.n_workers >= 0, "n_workers", "0 or more workers", self.n_workers)
        require(self.prefetch_factor > 0, "prefetch_factor", "a positive count", self.prefetch_factor)


@dataclass(frozen=True, kw_only=True)
class ValDatasetOptions(DatasetOptions):
    """Whole medium-resolution images, cropped to a multiple of the scale, for validation."""

    max_images: int | None = option(None, doc="validate on the first N images (sorted by name); null: all")
    tile_size: int | None = option(
        512, doc="LR tile size for validation inference of large images; null: whole images"
    )
    degrade: bool = option(
        False,
        doc="make the LR with datasets.train.degradation at a fixed seed, once: saved under "
        "experiments/<name>/val_lq/ and reused by every validation and resumed run",
    )

    @property
    def label(self) -> str:
        """The set's name in logs, TensorBoard tags and folders: ``name``, else the dataroot's folder name."""
        return self.name or self.dataroot.stem

    def __post_init__(self) -> None:
        if self.degrade:
            require(
                self.dataroot_lq is None, "dataroot_lq", "null when degrade is true", str(self.dataroot_lq)
            )
        if self.max_images is not None:
            require(self.max_images > 0, "max_images", "a positive count or null", self.max_images)
        if self.tile_size is not None:
            require(self.tile_size >= 32, "tile_size", "a tile size of at least 32 or null", self.tile_size)


def build_dataset(options: DatasetOptions, scale: int) -> Dataset:
    """Instantiate the registered dataset class for ``options.type``."""
    dataset: Dataset = DATASETS.get(options.type).cls(options, scale)
    return dataset
