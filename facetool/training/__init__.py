"""Training: the FaceNet triplet loop, checkpoints, history and plots."""
