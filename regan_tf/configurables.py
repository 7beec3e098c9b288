"""Gin registrations: the one place where gin meets the library.

Core modules import no gin. This module registers the functions a gin file
may name, under short, stable names:

    train                      regan_tf.trainer.train
    data.digits                regan_tf.data.load_digits
    data.image_folder          regan_tf.data.load_image_folder
    data.tfds                  regan_tf.data.load_tfds
    models.dcgan, models.sngan regan_tf.models.<arch>.build
    models.autogan             regan_tf.models.autogan.build
    models.progan              regan_tf.models.progan.build (ProGAN; grows with train.growth)
    growth                     regan_tf.progressive.growth_schedule (train.growth = @growth)
    models.stylegan2           regan_tf.models.stylegan2.build (config E; set train.z_dim = 512)
    regan                      regan_tf.pruning.build_controller (Re-GAN; train.pruning = @regan)
    evaluation                 regan_tf.metrics.build_evaluator (FID/IS/KID; train.evaluation = @evaluation)
    apa                        regan_tf.augment.AdaptivePseudoAugment (train.apa = @apa)
    ema                        regan_tf.ema.GeneratorEMA (train.ema = @ema)

Entry points call :data:`train` (the gin-configured wrapper), not
``trainer.train`` directly.
"""

from __future__ import annotations

import gin

from regan_tf import augment
from regan_tf import data
from regan_tf import ema
from regan_tf import metrics
from regan_tf import models
from regan_tf import progressive
from regan_tf import pruning
from regan_tf import trainer

train = gin.external_configurable(trainer.train, name="train", denylist=["workdir", "config_text", "allow_config_change"])

gin.external_configurable(data.load_digits, name="digits", module="data")
gin.external_configurable(data.load_image_folder, name="image_folder", module="data")
gin.external_configurable(data.load_tfds, name="tfds", module="data")

gin.external_configurable(models.dcgan.build, name="dcgan", module="models")
gin.external_configurable(models.sngan.build, name="sngan", module="models")
gin.external_configurable(models.progan.build, name="progan", module="models")
gin.external_configurable(models.autogan.build, name="autogan", module="models")
# ProGAN's growth schedule (train.growth = @growth): the trainer supplies the data size,
# n_critic and its batch size; gin sets the stage lengths, fades and batches.
gin.external_configurable(progressive.growth_schedule, name="growth",
                          denylist=["num_examples", "n_critic", "batch_size"])
gin.external_configurable(models.stylegan2.build, name="stylegan2", module="models")

# The trainer supplies the generator, strategy and run lengths; gin sets the Re-GAN numbers.
gin.external_configurable(pruning.build_controller, name="regan",
                          denylist=["generator", "strategy", "steps_per_epoch", "train_steps",
                                    "start_step"])

# The trainer supplies the reference images and z_dim; gin picks extractor, sample count, cache.
gin.external_configurable(metrics.build_evaluator, name="evaluation", denylist=["data", "z_dim"])

# APA and the generator EMA: gin sets their numbers; the trainer supplies the strategy and models.
gin.external_configurable(augment.AdaptivePseudoAugment, name="apa", denylist=["strategy"])
gin.external_configurable(ema.GeneratorEMA, name="ema", denylist=["generator", "controller", "strategy"])
