"""Data sampling and loading: people batches, faces to tensors, on-device augmentation."""
