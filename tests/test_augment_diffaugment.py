"""Tests for regan_tf.augment.diffaugment (DiffAugment, Zhao et al. 2020)."""

import numpy as np
import pytest

from regan_tf.augment import diffaugment
from regan_tf.augment.diffaugment import diff_augment, parse_policy
from regan_tf.compat import keras, tf

FULL = "color,translation,cutout"
SEED = tf.constant([3, 4], tf.int64)


def images(batch=4, size=16, channels=3, dtype=tf.float32, seed=(1, 2)):
  x = tf.random.stateless_uniform([batch, size, size, channels], seed=seed, minval=-1, maxval=1)
  return tf.cast(x, dtype)


def shifted(x: np.ndarray, dh: int, dw: int) -> np.ndarray:
  """out[i, j] = x[i + dh, j + dw], 0 outside (one image [H, W, C])."""
  out = np.zeros_like(x)
  h, w = x.shape[:2]
  for i in range(h):
    for j in range(w):
      if 0 <= i + dh < h and 0 <= j + dw < w:
        out[i, j] = x[i + dh, j + dw]
  return out


# ------------------------------------------------------------------ policy


def test_parse_policy():
  assert parse_policy(FULL) == ("color", "translation", "cutout")
  assert parse_policy(" translation , cutout ") == ("translation", "cutout")
  assert parse_policy("") == ()
  assert parse_policy(["color"]) == ("color",)


@pytest.mark.parametrize("policy", ["colour", "color,,cutout", "color,flip"])
def test_unknown_policy_lists_the_valid_names(policy):
  with pytest.raises(ValueError, match="color, translation, cutout"):
    parse_policy(policy)
  with pytest.raises(ValueError, match="valid names"):
    diff_augment(images(), policy, seed=SEED)


def test_empty_policy_is_the_identity():
  x = images()
  assert diff_augment(x, "", seed=SEED) is x


def test_rejects_int_images_and_dynamic_image_sizes():
  with pytest.raises(ValueError, match="float images"):
    diff_augment(tf.zeros([2, 8, 8, 3], tf.uint8), "cutout", seed=SEED)
  fn = tf.function(lambda x: diff_augment(x, "cutout", seed=SEED),
                   input_signature=[tf.TensorSpec([2, None, None, 3])])
  with pytest.raises(ValueError, match="static H, W, C"):
    fn.get_concrete_function()


def test_dynamic_batch_size_matches_the_static_one():
  x = images()
  fn = tf.function(lambda x: diff_augment(x, FULL, seed=SEED),
                   input_signature=[tf.TensorSpec([None, 16, 16, 3])])
  np.testing.assert_allclose(fn(x).numpy(), diff_augment(x, FULL, seed=SEED).numpy(), atol=1e-6)


# ------------------------------------------------------------------ shapes


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float16])
def test_shape_and_dtype_preserved(channels, dtype):
  x = images(channels=channels, dtype=dtype)
  y = diff_augment(x, FULL, seed=SEED)
  assert y.shape == x.shape and y.dtype == dtype
  assert np.all(np.isfinite(y.numpy().astype(np.float32)))


# -------------------------------------------------------------- transforms


def test_color_changes_values_and_may_leave_the_range():
  x = images(batch=64)
  y = diff_augment(x, "color", seed=SEED)
  assert y.shape == x.shape
  assert not np.allclose(y.numpy(), x.numpy())
  # As in the reference, nothing clips: brightness and contrast push values out of [-1, 1].
  assert np.abs(y.numpy()).max() > 1.0


def test_saturation_is_the_identity_on_one_channel():
  x = images(channels=1)
  np.testing.assert_allclose(diffaugment.rand_saturation(x, SEED).numpy(), x.numpy(), atol=1e-6)


def test_brightness_adds_one_constant_per_image_in_range():
  x = images(batch=32)
  delta = (diffaugment.rand_brightness(x, SEED) - x).numpy()
  per_image = delta.reshape(32, -1)
  np.testing.assert_allclose(per_image, per_image[:, :1].repeat(per_image.shape[1], 1), atol=1e-6)
  assert np.all(np.abs(per_image) <= 0.5)


def test_translate_with_known_offsets_equals_a_shifted_copy():
  x = images(batch=4, size=8)
  offsets_h, offsets_w = [0, 1, -2, 8], [0, -1, 3, 0]
  y = diffaugment.translate(x, tf.constant(offsets_h), tf.constant(offsets_w)).numpy()
  for b in range(4):
    np.testing.assert_array_equal(y[b], shifted(x.numpy()[b], offsets_h[b], offsets_w[b]))
  assert np.all(y[3] == 0)  # shifted by the whole height


def test_random_translation_is_a_shift_by_at_most_an_eighth():
  x = images(batch=16, size=16)
  y = diff_augment(x, "translation", seed=SEED).numpy()
  limit = 2  # round(16 / 8)
  seen = set()
  for b in range(16):
    matches = [(dh, dw) for dh in range(-limit, limit + 1) for dw in range(-limit, limit + 1)
               if np.array_equal(y[b], shifted(x.numpy()[b], dh, dw))]
    assert len(matches) == 1, f"image {b} is not a shift within +-{limit}"
    seen.add(matches[0])
  assert len(seen) > 3  # offsets differ between images


def test_cutout_with_known_centres_zeroes_exactly_a_half_size_square():
  size = 16
  x = tf.ones([3, size, size, 3])
  y = diffaugment.cutout(x, tf.constant([8, 4, 12]), tf.constant([8, 4, 5])).numpy()
  side = size // 2
  for b, (ch, cw) in enumerate([(8, 8), (4, 4), (12, 5)]):
    zeros = y[b, :, :, 0] == 0
    assert zeros.sum() == side * side
    top, left = ch - side // 2, cw - side // 2
    assert zeros[top:top + side, left:left + side].all()
    assert (y[b][zeros] == 0).all() and (y[b][~zeros] == 1).all()  # all channels alike


def test_random_cutout_zeroes_one_square_clipped_at_the_border():
  size = 16
  x = tf.ones([64, size, size, 3])
  y = diff_augment(x, "cutout", seed=SEED).numpy()
  counts = []
  for b in range(64):
    zeros = y[b, :, :, 0] == 0
    rows, cols = np.nonzero(zeros.any(1))[0], np.nonzero(zeros.any(0))[0]
    # One axis-aligned rectangle (the square, possibly clipped), at most 8 x 8.
    assert zeros[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    assert len(rows) <= 8 and len(cols) <= 8
    counts.append(zeros.sum())
  assert max(counts) == 64  # unclipped squares are exactly (size / 2)^2
  assert min(counts) < 64  # some are clipped, as in the reference


# --------------------------------------------------------------- gradients


def test_gradients_flow_to_the_images():
  x = images()
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = diff_augment(x, FULL, seed=SEED)
    loss = tf.reduce_sum(y * y)
  grad = tape.gradient(loss, x)
  assert grad is not None and np.abs(grad.numpy()).sum() > 0


def test_gradients_reach_a_generator_through_the_augmentation():
  keras.utils.set_random_seed(0)
  z = keras.Input((4,))
  out = keras.layers.Reshape((8, 8, 3))(keras.layers.Dense(8 * 8 * 3, activation="tanh")(z))
  generator = keras.Model(z, out)
  with tf.GradientTape() as tape:
    fake = generator(tf.ones([2, 4]), training=True)
    loss = tf.reduce_mean(tf.square(diff_augment(fake, FULL, seed=SEED)))
  kernel = generator.trainable_variables[0]
  grad = tape.gradient(loss, kernel)
  assert grad is not None and np.abs(grad.numpy()).sum() > 0


# ------------------------------------------------------ XLA and determinism


def test_compiles_with_xla_and_matches_the_plain_function():
  x = images(channels=3)
  fn = tf.function(lambda x, seed: diff_augment(x, FULL, seed=seed), jit_compile=True)
  for seed in (SEED, tf.constant([2**40 + 5, -7], tf.int64)):
    np.testing.assert_allclose(fn(x, seed).numpy(), diff_augment(x, FULL, seed=seed).numpy(),
                               atol=1e-5)


def test_same_seed_same_result_different_seed_different_result():
  x = images()
  a = diff_augment(x, FULL, seed=tf.constant([5, 6]))
  b = diff_augment(x, FULL, seed=tf.constant([5, 6], tf.int64))
  c = diff_augment(x, FULL, seed=tf.constant([5, 7]))
  np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not np.allclose(a.numpy(), c.numpy())
