r"""Re-GAN in a custom tf.GradientTape training loop: a small GAN on scikit-learn's digits.

    python examples/custom_loop.py                             # 1,200 generator updates, ~1-2 min on 2 CPU cores
    python examples/custom_loop.py --steps=6 --warmup=2 --g=2  # a few steps (tests/test_keras_api.py runs --steps=4 --warmup=1 --g=1, batch 8)

The loop calls the Re-GAN controller's three hooks itself (lines marked ``# Re-GAN``):
``before_g_step`` on the host before every generator update (phase changes, masks,
G's learning rate), ``mask_gradients`` between ``tape.gradient`` and
``apply_gradients`` (masked weights get no gradient), and ``apply_masks`` after it
(Adam's momentum would move them; this restores exact zeros). Forgetting
``before_g_step`` makes the first training call of the generator fail; forgetting
either of the other two makes the second ``before_g_step`` fail, naming the call.
"""

from __future__ import annotations

import argparse
from typing import Dict, Optional, Sequence

import numpy as np

import regan_tf  # first: selects Keras 2 (tf_keras) before TensorFlow loads
from regan_tf import data as data_lib
from regan_tf.compat import keras, tf

IMAGE_SIZE = 16


def make_generator(latent_dim: int) -> keras.Model:
  """z [B, latent_dim] -> images [B, 16, 16, 1] in [-1, 1] (Functional)."""
  z = keras.Input((latent_dim,))
  x = keras.layers.Dense(4 * 4 * 64)(z)
  x = keras.layers.Reshape((4, 4, 64))(x)
  for channels in (64, 32):
    x = keras.layers.Conv2DTranspose(channels, 4, strides=2, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.LeakyReLU(0.2)(x)
  images = keras.layers.Conv2D(1, 3, padding="same", activation="tanh")(x)
  return keras.Model(z, images, name="generator")


def make_discriminator() -> keras.Model:
  """images [B, 16, 16, 1] -> logits [B, 1]."""
  return keras.Sequential([
      keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1)),
      keras.layers.Conv2D(32, 4, strides=2, padding="same"),
      keras.layers.LeakyReLU(0.2),
      keras.layers.Conv2D(64, 4, strides=2, padding="same"),
      keras.layers.LeakyReLU(0.2),
      keras.layers.Flatten(),
      keras.layers.Dense(1),
  ], name="discriminator")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
  """Trains with the hooks; returns the stripped generator's zero fraction per kernel."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=1200, help="generator updates")
  parser.add_argument("--warmup", type=int, default=200, help="dense warm-up, generator updates")
  parser.add_argument("--g", type=int, default=200, help="length of each sparse / dense phase")
  parser.add_argument("--sparsity", type=float, default=0.3)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--latent_dim", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.steps < 1:
    parser.error(f"--steps={args.steps} must be >= 1")
  keras.utils.set_random_seed(args.seed)

  images = data_lib.load_digits(image_size=IMAGE_SIZE, channels=1).images
  images = images.astype(np.float32) / 127.5 - 1.0
  batches = iter(tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=args.seed)
                 .batch(args.batch_size, drop_remainder=True).repeat())

  generator = regan_tf.prune_regrow(make_generator(args.latent_dim),  # Re-GAN
                                    sparsity=args.sparsity, warmup=args.warmup, g=args.g,
                                    final_phase="sparse", total_steps=args.steps)
  controller = regan_tf.controller_of(generator)  # Re-GAN
  discriminator = make_discriminator()
  g_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
  d_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)

  @tf.function
  def train_step(reals):
    batch_size = tf.shape(reals)[0]
    z = tf.random.normal((batch_size, args.latent_dim))
    with tf.GradientTape() as tape:  # discriminator, hinge loss
      fakes = generator(z, training=True)
      d_loss = (tf.reduce_mean(tf.nn.relu(1.0 - discriminator(reals, training=True)))
                + tf.reduce_mean(tf.nn.relu(1.0 + discriminator(fakes, training=True))))
    variables = discriminator.trainable_variables
    d_optimizer.apply_gradients(zip(tape.gradient(d_loss, variables), variables))

    z = tf.random.normal((batch_size, args.latent_dim))
    with tf.GradientTape() as tape:  # generator
      g_loss = -tf.reduce_mean(discriminator(generator(z, training=True), training=True))
    variables = generator.trainable_variables
    grads = tape.gradient(g_loss, variables)
    grads = controller.mask_gradients(grads, variables)  # Re-GAN
    g_optimizer.apply_gradients(zip(grads, variables))
    controller.apply_masks()  # Re-GAN
    return d_loss, g_loss

  for step in range(args.steps):
    for event in controller.before_g_step(step, g_optimizer):  # Re-GAN
      print(event.message, flush=True)
    d_loss, g_loss = train_step(next(batches))
    if (step + 1) % 100 == 0 or step + 1 == args.steps:
      print(f"step {step + 1}: d_loss {float(d_loss):.3f} g_loss {float(g_loss):.3f}", flush=True)

  plain = regan_tf.strip(generator)  # Re-GAN: a plain Keras model, pruned weights exactly 0
  zeros = {layer.name: float(np.mean(layer.kernel.numpy() == 0))
           for layer in plain.layers if hasattr(layer, "kernel")}
  print("zero fraction of each kernel of the stripped generator: "
        + ", ".join(f"{name} {value:.3f}" for name, value in zeros.items()))
  return zeros


if __name__ == "__main__":
  main()
