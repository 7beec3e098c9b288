"""Augmentations for data-efficient GAN training, used by the trainer's D step.

* ``diffaugment``: DiffAugment (Zhao et al., NeurIPS 2020), differentiable
  color / translation / cutout applied to every image D sees.
* ``apa``: adaptive pseudo augmentation (Jiang et al., NeurIPS 2021), which
  shows D generated images as real ones with an adaptive probability.

Both draw their randomness from explicit stateless seeds and compile under XLA.
"""

from regan_tf.augment.apa import AdaptivePseudoAugment
from regan_tf.augment.diffaugment import POLICIES, diff_augment, parse_policy

__all__ = ["AdaptivePseudoAugment", "POLICIES", "diff_augment", "parse_policy"]
