"""Image data: reading and writing images, MATLAB-exact resizing, datasets."""
