"""Image data: reading and writing images, MATLAB-exact resizing, chunking, datasets and loaders."""

from . import datasets as datasets  # registers the dataset types
