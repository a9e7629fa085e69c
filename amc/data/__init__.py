"""Stage 1, data: the embedded ``digits`` and CIFAR-10 as normalised in-memory tensors, image
folders of any image sizes streamed from their files, with a seeded ``val`` split held out of
the training split for search rewards, and the batch plans every training worker shares."""

from amc.data.datasets import SPLITS, Dataset, cache_dir, check_split, load_dataset

__all__ = ["SPLITS", "Dataset", "cache_dir", "check_split", "load_dataset"]
