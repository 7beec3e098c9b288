"""Datasets as in-memory uint8 arrays, and the deterministic training pipeline.

Every source returns :class:`ImageData` (uint8 [N, H, W, C] at the target size,
int64 labels or None, a name); :func:`select_subset` takes the "10% of the data"
subsets of data-efficient GAN training; :func:`make_pipeline` turns the arrays
into an infinite, resumable stream of float32 batches in [-1, 1].
"""

from regan_tf.data.pipeline import make_pipeline
from regan_tf.data.sources import ImageData
from regan_tf.data.sources import load_digits
from regan_tf.data.sources import load_image_folder
from regan_tf.data.sources import load_tfds
from regan_tf.data.subset import SUBSET_RULES
from regan_tf.data.subset import check_fraction
from regan_tf.data.subset import check_rule
from regan_tf.data.subset import select_subset
from regan_tf.data.subset import subset_indices

__all__ = [
    "ImageData",
    "SUBSET_RULES",
    "check_fraction",
    "check_rule",
    "load_digits",
    "load_image_folder",
    "load_tfds",
    "make_pipeline",
    "select_subset",
    "subset_indices",
]
