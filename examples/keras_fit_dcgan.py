r"""Re-GAN on a Keras GAN trained with Model.fit: a DCGAN on scikit-learn's digits.

    python examples/keras_fit_dcgan.py                       # 1,200 generator updates, ~2 min on 2 CPU cores
    python examples/keras_fit_dcgan.py --steps=6 --warmup=2 --g=2   # a few steps (tests/test_keras_api.py runs --steps=4 --warmup=1 --g=1, batch 8)
    python examples/keras_fit_dcgan.py --out=runs/fit_dcgan  # also writes samples.png and generator.keras there

The GAN is written the way the keras.io DCGAN tutorial writes one: a ``keras.Model``
subclass holding a generator and a discriminator, with its own ``compile`` and
``train_step``, trained by ``fit``. Re-GAN adds three lines (marked ``# Re-GAN``):
``prune_regrow`` wraps the generator, ``ReganCallback`` drives the phases during
``fit``, ``strip`` gives back a plain Keras model with the pruned weights at zero.
The ``train_step`` is unchanged.
"""

from __future__ import annotations

import argparse
import os
from typing import Dict, Optional, Sequence

import numpy as np

import regan_tf  # first: selects Keras 2 (tf_keras) before TensorFlow loads
from regan_tf import data as data_lib
from regan_tf import images as images_lib
from regan_tf.compat import keras, tf

IMAGE_SIZE = 16


def make_generator(latent_dim: int) -> keras.Model:
  """z [B, latent_dim] -> images [B, 16, 16, 1] in [-1, 1]."""
  return keras.Sequential([
      keras.Input((latent_dim,)),
      keras.layers.Dense(4 * 4 * 64),
      keras.layers.Reshape((4, 4, 64)),
      keras.layers.Conv2DTranspose(64, 4, strides=2, padding="same"),
      keras.layers.BatchNormalization(),
      keras.layers.LeakyReLU(0.2),
      keras.layers.Conv2DTranspose(32, 4, strides=2, padding="same"),
      keras.layers.BatchNormalization(),
      keras.layers.LeakyReLU(0.2),
      keras.layers.Conv2D(1, 3, padding="same", activation="tanh"),
  ], name="generator")


def make_discriminator() -> keras.Model:
  """images [B, 16, 16, 1] -> real/fake probability [B, 1]."""
  return keras.Sequential([
      keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1)),
      keras.layers.Conv2D(32, 4, strides=2, padding="same"),
      keras.layers.LeakyReLU(0.2),
      keras.layers.Conv2D(64, 4, strides=2, padding="same"),
      keras.layers.LeakyReLU(0.2),
      keras.layers.Flatten(),
      keras.layers.Dropout(0.2),
      keras.layers.Dense(1, activation="sigmoid"),
  ], name="discriminator")


class GAN(keras.Model):
  """A generator and a discriminator trained in turns, one of each per batch."""

  def __init__(self, discriminator: keras.Model, generator: keras.Model, latent_dim: int):
    super().__init__()
    self.discriminator = discriminator
    self.generator = generator
    self.latent_dim = latent_dim

  def compile(self, d_optimizer, g_optimizer, loss_fn):
    super().compile()
    self.d_optimizer = d_optimizer
    self.g_optimizer = g_optimizer
    self.loss_fn = loss_fn
    self.d_loss_metric = keras.metrics.Mean(name="d_loss")
    self.g_loss_metric = keras.metrics.Mean(name="g_loss")

  @property
  def metrics(self):
    return [self.d_loss_metric, self.g_loss_metric]

  def train_step(self, real_images):
    batch_size = tf.shape(real_images)[0]
    # Discriminator: fakes labelled 1, reals 0, with a little label noise.
    z = tf.random.normal((batch_size, self.latent_dim))
    fakes = self.generator(z)
    images = tf.concat([fakes, real_images], axis=0)
    labels = tf.concat([tf.ones((batch_size, 1)), tf.zeros((batch_size, 1))], axis=0)
    labels += 0.05 * tf.random.uniform(tf.shape(labels))
    with tf.GradientTape() as tape:
      d_loss = self.loss_fn(labels, self.discriminator(images))
    grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
    self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
    # Generator: make the discriminator call its fakes real (0).
    z = tf.random.normal((batch_size, self.latent_dim))
    with tf.GradientTape() as tape:
      g_loss = self.loss_fn(tf.zeros((batch_size, 1)), self.discriminator(self.generator(z)))
    grads = tape.gradient(g_loss, self.generator.trainable_weights)
    self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
    self.d_loss_metric.update_state(d_loss)
    self.g_loss_metric.update_state(g_loss)
    return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}


def digits_dataset(batch_size: int, seed: int) -> tf.data.Dataset:
  """scikit-learn's 1,797 digits at 16x16 in [-1, 1], shuffled, repeated."""
  images = data_lib.load_digits(image_size=IMAGE_SIZE, channels=1).images
  images = images.astype(np.float32) / 127.5 - 1.0
  return (tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=seed)
          .batch(batch_size, drop_remainder=True).repeat())


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
  """Trains, strips and reports; returns the stripped generator's zero fraction per kernel."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=1200, help="generator updates (= batches)")
  parser.add_argument("--warmup", type=int, default=200, help="dense warm-up, generator updates")
  parser.add_argument("--g", type=int, default=200, help="length of each sparse / dense phase")
  parser.add_argument("--sparsity", type=float, default=0.3)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--latent_dim", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=None, help="folder for samples.png and generator.keras")
  args = parser.parse_args(argv)
  if args.steps < 1:
    parser.error(f"--steps={args.steps} must be >= 1")
  keras.utils.set_random_seed(args.seed)

  generator = make_generator(args.latent_dim)
  generator = regan_tf.prune_regrow(generator, sparsity=args.sparsity,  # Re-GAN
                                    warmup=args.warmup, g=args.g, final_phase="sparse",
                                    total_steps=args.steps)
  gan = GAN(make_discriminator(), generator, args.latent_dim)
  g_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
  gan.compile(d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5), g_optimizer=g_optimizer,
              loss_fn=keras.losses.BinaryCrossentropy())
  steps_per_epoch = min(args.steps, 100)
  epochs = -(-args.steps // steps_per_epoch)
  steps_per_epoch = args.steps // epochs  # every epoch the same length
  if steps_per_epoch * epochs != args.steps:
    print(f"training {steps_per_epoch * epochs} generator updates ({epochs} epochs of "
          f"{steps_per_epoch}), not {args.steps}")
  gan.fit(digits_dataset(args.batch_size, args.seed), epochs=epochs,
          steps_per_epoch=steps_per_epoch, verbose=2,
          callbacks=[regan_tf.ReganCallback(generator, g_optimizer=g_optimizer)])  # Re-GAN

  plain = regan_tf.strip(generator)  # Re-GAN: a plain Keras model, pruned weights exactly 0
  zeros = {layer.name: float(np.mean(layer.kernel.numpy() == 0))
           for layer in plain.layers if hasattr(layer, "kernel")}
  print("zero fraction of each kernel of the stripped generator: "
        + ", ".join(f"{name} {value:.3f}" for name, value in zeros.items()))
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    samples = plain(tf.random.stateless_normal((64, args.latent_dim), seed=(args.seed, 0)),
                    training=False).numpy()
    images_lib.write_png(os.path.join(args.out, "samples.png"), images_lib.make_grid(samples))
    plain.save(os.path.join(args.out, "generator.keras"))
    print(f"wrote {args.out}/samples.png and {args.out}/generator.keras")
  return zeros


if __name__ == "__main__":
  main()
