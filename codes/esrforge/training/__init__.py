"""Training: building what a config describes, the experiment folder, and the training loop."""
