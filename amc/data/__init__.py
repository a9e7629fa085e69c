"""Stage 1, data: the embedded ``digits``, CIFAR-10 and ImageFolder trees as normalised
tensors, with a seeded ``val`` split held out of the training split for search rewards."""

from amc.data.datasets import SPLITS, Dataset, cache_dir, check_split, load_dataset

__all__ = ["SPLITS", "Dataset", "cache_dir", "check_split", "load_dataset"]
