"""Re-GAN's generator reconfiguration: masks, schedule, TFMOT wrappers, controller.

Saxena et al., "Re-GAN: Data-Efficient GANs Training via Architectural
Reconfiguration", CVPR 2023. One concept per module:

* ``masks``: which entries of a tensor a sparse phase removes (pure tensor math).
* ``schedule``: when G is sparse or dense, and its learning-rate factor.
* ``wrapper``: TFMOT ``PruneLowMagnitude`` wrappers that hold the masks;
  ``prune_generator`` / ``strip`` / ``sparsity_report``.
* ``keras_api``: ``prune_regrow`` / ``ReganCallback`` / ``controller_of`` /
  ``strip``, the TFMOT-shaped API (also on the top-level package).
* ``controller``: the trainer's hooks (``before_g_step``, ``mask_gradients``,
  ``apply_masks``), checkpoint items and summaries, under tf.distribute.
"""

from regan_tf.pruning.keras_api import ReganCallback, controller_of, prune_regrow
from regan_tf.pruning.controller import (PhaseEvent, PhaseScaledLearningRate, ReganController,
                                         build_controller)
from regan_tf.pruning.masks import (magnitude_mask, magnitude_mask_and_threshold,
                                    magnitude_masks_and_thresholds, num_pruned, sparsity_of)
from regan_tf.pruning.schedule import Phase, ReganSchedule
from regan_tf.pruning.wrapper import (PrunedTensor, ReganPruneWrapper, prunable_weight_names,
                                      prune_generator, pruned_tensors, sparsity_report, strip)

__all__ = [
    "Phase",
    "PhaseEvent",
    "PhaseScaledLearningRate",
    "PrunedTensor",
    "ReganCallback",
    "ReganController",
    "ReganPruneWrapper",
    "ReganSchedule",
    "build_controller",
    "controller_of",
    "magnitude_mask",
    "magnitude_mask_and_threshold",
    "magnitude_masks_and_thresholds",
    "num_pruned",
    "prunable_weight_names",
    "prune_generator",
    "prune_regrow",
    "pruned_tensors",
    "sparsity_report",
    "sparsity_of",
    "strip",
]
