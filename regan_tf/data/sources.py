"""Image sources that materialize into host memory as :class:`ImageData`.

Re-GAN targets small data (CIFAR-10 subsets, 100-shot folders), so every
source decodes all of its images once, at load time, into one uint8 array at
the target size. Training then gathers batches from that array by index
(:mod:`regan_tf.data.pipeline`), which makes the input order an exact function
of ``(seed, example position)``.

Three sources:

* :func:`load_digits`: scikit-learn's 8x8 digits (ships with scikit-learn, so
  it works offline); for smoke tests and CPU examples.
* :func:`load_image_folder`: a tree of JPEG/PNG files, optionally one
  subfolder per class (the offline CIFAR-10 JPEGs, 100-shot folders).
* :func:`load_tfds`: any TensorFlow Datasets image dataset (CIFAR-10 with
  internet, or from a prepared ``data_dir``).

All three resize with the same rule (short side to ``image_size``, then a
center crop to a square) and convert channels the same way, so that the same
images reach the trainer in the same element format whichever source read them.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import time
from typing import List, Optional, Sequence, Tuple
import urllib.parse

from absl import logging
import numpy as np

from regan_tf import netcheck
from regan_tf.compat import tf

__all__ = [
    "ImageData",
    "IMAGE_EXTENSIONS",
    "load_digits",
    "load_image_folder",
    "load_tfds",
]

# Lower-case; matched case-insensitively against file names.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_ON_CORRUPT_CHOICES = ("stop", "skip")
_MAX_PATHS_IN_MESSAGE = 5
# Seconds to wait for a TCP connection to a download host before calling the
# machine offline. tfds itself retries for minutes before failing.
_NETWORK_TIMEOUT_S = 3.0
# Used when a TFDS builder lists no download URLs (e.g. it is read from GCS).
_FALLBACK_HOST = "storage.googleapis.com"


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A whole image dataset in host memory.

  Attributes:
    images: uint8 [N, H, W, C] with H == W, already at the target size.
    labels: int64 [N] class indices, or None for unlabeled data.
    name: where the data came from, e.g. "digits", "cifar10",
      "image_folder:/path/to/folder"; used in logs and run metadata.
  """
  images: np.ndarray
  labels: Optional[np.ndarray]
  name: str

  def __post_init__(self):
    images = self.images
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
      raise ValueError(
          f"ImageData.images must be a uint8 numpy array [N, H, W, C], got "
          f"{_describe_array(images)}; convert with np.asarray(x, np.uint8) and "
          f"add the missing axes (e.g. x[..., None] for grayscale).")
    n, h, w, c = images.shape
    if n < 1:
      raise ValueError(f"ImageData.images must hold at least one image, got shape {images.shape}.")
    if h != w:
      raise ValueError(
          f"ImageData.images must be square (H == W), got shape {images.shape}; "
          f"resize and center-crop first (the loaders' image_size argument does this).")
    if c not in (1, 3):
      raise ValueError(
          f"ImageData.images must have 1 or 3 channels, got {c} (shape {images.shape}); "
          f"convert RGBA to RGB or pass channels=1/3 to the loader.")
    if self.labels is not None:
      labels = self.labels
      if (not isinstance(labels, np.ndarray) or labels.dtype != np.int64
          or labels.shape != (n,)):
        raise ValueError(
            f"ImageData.labels must be None or an int64 numpy array [N] with N={n}, got "
            f"{_describe_array(labels)}; use np.asarray(labels, np.int64).")

  @property
  def num_examples(self) -> int:
    """N, the number of images."""
    return int(self.images.shape[0])

  @property
  def image_size(self) -> int:
    """H (== W): the side of the square images."""
    return int(self.images.shape[1])

  @property
  def channels(self) -> int:
    """C: 1 (grayscale) or 3 (RGB)."""
    return int(self.images.shape[3])


# ----------------------------------------------------------------------------
# Validation and shared image ops.
# ----------------------------------------------------------------------------


def _describe_array(x) -> str:
  if isinstance(x, np.ndarray):
    return f"array of dtype {x.dtype} and shape {x.shape}"
  return f"{type(x).__name__} {x!r:.80}"


def _is_int(x) -> bool:
  return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_image_size(image_size, *, minimum: int = 1, name: str = "image_size") -> int:
  if not _is_int(image_size) or image_size < minimum:
    raise ValueError(
        f"{name} must be an integer >= {minimum}, got {image_size!r}; "
        f"use e.g. {name}=32 for 32x32 images.")
  return int(image_size)


def _check_channels(channels, *, name: str = "channels") -> int:
  if not _is_int(channels) or channels not in (1, 3):
    raise ValueError(
        f"{name} must be 1 (grayscale) or 3 (RGB), got {channels!r}.")
  return int(channels)


def _convert_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
  """Converts [..., H, W, C] with C in (1, 3, 4) to ``channels`` (1 or 3)."""
  have = image.shape[-1]
  if have == channels:
    return image
  if have == 4:  # RGBA: drop alpha
    image = image[..., :3]
    have = 3
  if have == 1 and channels == 3:
    return tf.image.grayscale_to_rgb(image)
  if have == 3 and channels == 1:
    return tf.image.rgb_to_grayscale(image)
  if have == channels:
    return image
  raise ValueError(f"cannot convert images with {have} channels to channels={channels}.")


def _resize_short_side_and_center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """uint8 [H, W, C] -> uint8 [size, size, C].

  Scales (bilinear, antialiased when shrinking, in float) so that the short
  side equals ``size``, then crops the center square. Images already
  ``size x size`` pass through untouched, bit for bit.
  """
  shape = tf.shape(image)
  height, width = shape[0], shape[1]

  def _resize():
    short = tf.minimum(height, width)
    scale = tf.cast(size, tf.float32) / tf.cast(short, tf.float32)
    # max(size, .) guards the short side against float rounding to size - 1.
    new_h = tf.maximum(size, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
    new_w = tf.maximum(size, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]),
                              method="bilinear", antialias=True)
    top = (new_h - size) // 2
    left = (new_w - size) // 2
    cropped = resized[top:top + size, left:left + size, :]
    return tf.cast(tf.clip_by_value(tf.round(cropped), 0.0, 255.0), tf.uint8)

  out = tf.cond(tf.logical_and(tf.equal(height, size), tf.equal(width, size)),
                lambda: image, _resize)
  return tf.ensure_shape(out, [size, size, image.shape[-1]])


# ----------------------------------------------------------------------------
# scikit-learn digits.
# ----------------------------------------------------------------------------


def load_digits(*, image_size: int = 32, channels: int = 1) -> ImageData:
  """Loads scikit-learn's handwritten digits (1,797 images, 10 classes).

  The 8x8 originals hold values 0..16; they are scaled to 0..255 and resized
  bilinearly in float before rounding to uint8. Works offline (the data ships
  with scikit-learn).

  Args:
    image_size: side of the output images, >= 8 (the native size).
    channels: 1 (grayscale) or 3 (the gray value repeated).

  Returns:
    ImageData with images uint8 [1797, image_size, image_size, channels] and
    labels int64 [1797] in 0..9.

  Raises:
    ValueError: image_size < 8 or not an integer; channels not 1 or 3.
  """
  image_size = _check_image_size(image_size, minimum=8)
  channels = _check_channels(channels)
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top

  digits = sk_datasets.load_digits()
  images = digits.images.astype(np.float32) * (255.0 / 16.0)  # [N, 8, 8]
  images = images[..., None]
  if image_size != images.shape[1]:
    images = tf.image.resize(images, [image_size, image_size], method="bilinear").numpy()
  images = np.clip(np.round(images), 0, 255).astype(np.uint8)
  if channels == 3:
    images = np.repeat(images, 3, axis=-1)
  return ImageData(images=images, labels=digits.target.astype(np.int64), name="digits")


# ----------------------------------------------------------------------------
# Folder of JPEG / PNG files.
# ----------------------------------------------------------------------------


def _is_image_file(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS)


def _list_images(directory: str) -> List[str]:
  """All image files below ``directory``, sorted by path components."""
  found = []
  for dirpath, _, filenames in os.walk(directory, followlinks=True):
    found.extend(os.path.join(dirpath, f) for f in filenames if _is_image_file(f))
  # Component tuples, not strings: "a/x.png" sorts before "a-b/x.png".
  return sorted(found, key=lambda p: os.path.relpath(p, directory).split(os.sep))


def _find_image_files(root: str) -> Tuple[List[str], Optional[np.ndarray], List[str]]:
  """Lists a folder's images in a fixed order and derives class labels.

  Returns:
    (paths, labels int64 [len(paths)] or None, class_names). Paths are sorted
    by class folder name, then by the path components inside it.
  """
  entries = sorted(os.listdir(root))
  root_files = [os.path.join(root, e) for e in entries
                if _is_image_file(e) and os.path.isfile(os.path.join(root, e))]
  class_dirs = [e for e in entries if os.path.isdir(os.path.join(root, e))]
  per_class = [(name, _list_images(os.path.join(root, name))) for name in class_dirs]
  # Folders without images are not classes (their index would be a gap).
  per_class = [(name, files) for name, files in per_class if files]

  if root_files and per_class:
    raise ValueError(
        f"image folder {root!r} mixes {len(root_files)} image files at its top level (e.g. "
        f"{root_files[0]!r}) with {len(per_class)} class subfolders (e.g. {per_class[0][0]!r}); "
        f"labels would be ambiguous. Move the top-level files into a class folder, or point path "
        f"at a folder that holds either only images or only class folders.")
  if root_files:
    return root_files, None, []
  paths, labels = [], []
  for label, (_, files) in enumerate(per_class):
    paths.extend(files)
    labels.extend([label] * len(files))
  return paths, np.asarray(labels, np.int64), [name for name, _ in per_class]


def _decode_files(paths: Sequence[str], image_size: int, channels: int
                 ) -> Tuple[np.ndarray, np.ndarray]:
  """Decodes and resizes files in parallel, dropping those that fail.

  Returns:
    (images uint8 [M, image_size, image_size, channels], kept int64 [M]): the
    decoded images and the positions in ``paths`` they came from; positions
    missing from ``kept`` are files that could not be read or decoded.
  """
  def _load(index, path):
    contents = tf.io.read_file(path)
    # decode_image would use libjpeg's fast IDCT, which is off by ~1 level per
    # pixel from PIL; the accurate one matches PIL exactly, so images (and FID
    # statistics) agree with PIL-based tools.
    image = tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=channels, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=channels, expand_animations=False,
                                   dtype=tf.uint8))
    return index, _resize_short_side_and_center_crop(image, image_size)

  dataset = tf.data.Dataset.from_tensor_slices(
      (tf.range(len(paths), dtype=tf.int64), tf.constant(list(paths))))
  dataset = dataset.map(_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  # A failing element is dropped instead of ending the pass; the indices that
  # come through tell which files failed, without a second (slow) scan.
  dataset = dataset.ignore_errors(log_warning=False)
  dataset = dataset.batch(1024).prefetch(2)

  kept, images = [], []
  for index_batch, image_batch in dataset.as_numpy_iterator():
    kept.append(index_batch)
    images.append(image_batch)
  if not kept:
    return (np.zeros([0, image_size, image_size, channels], np.uint8), np.zeros([0], np.int64))
  return np.concatenate(images), np.concatenate(kept)


def load_image_folder(path: str, *, image_size: int = 32, channels: int = 3,
                      on_corrupt: str = "stop") -> ImageData:
  """Loads every JPEG/PNG file below ``path`` into memory.

  Layouts:

  * ``path/<class>/.../*.jpg``: labels are the index of the class folder name
    in sorted order (for the CIFAR-10 JPEG folder this is CIFAR-10's label
    order, airplane=0 ... truck=9). Subfolders without images are ignored.
  * ``path/*.png`` (images directly in ``path``): labels are None.

  Files are read in sorted order (class folder, then path components inside
  it, e.g. a/b.png < a/c/a.png < a/d.png), so the
  same folder always gives the same array. Extensions are matched
  case-insensitively (.jpg, .jpeg, .png); the content is sniffed, so a PNG
  named .jpg still loads. Each image is converted to ``channels``, scaled so
  that its short side is ``image_size`` and center-cropped to a square; images
  already at ``image_size`` x ``image_size`` are kept bit for bit. Decoding
  runs in parallel in tf.data.

  Args:
    path: the folder.
    image_size: side of the output images.
    channels: 1 (grayscale) or 3 (RGB; grayscale files are repeated, alpha is
      dropped).
    on_corrupt: what to do with files that cannot be read or decoded: "stop"
      raises a ValueError naming them; "skip" drops them and logs a warning.

  Returns:
    ImageData named "image_folder:<absolute path>".

  Raises:
    FileNotFoundError: ``path`` does not exist or is not a folder.
    ValueError: bad arguments; no image files; a corrupt file with
      on_corrupt="stop"; a folder mixing top-level images and class folders.
  """
  if not isinstance(path, (str, os.PathLike)) or not str(path):
    raise ValueError(f"path must be a folder path (str), got {path!r}.")
  image_size = _check_image_size(image_size)
  channels = _check_channels(channels)
  if on_corrupt not in _ON_CORRUPT_CHOICES:
    raise ValueError(
        f"on_corrupt must be one of {_ON_CORRUPT_CHOICES}, got {on_corrupt!r}; 'stop' raises on "
        f"unreadable files, 'skip' drops them with a warning.")
  root = os.path.abspath(os.fspath(path))
  if not os.path.exists(root):
    raise FileNotFoundError(
        f"image folder path={root!r} does not exist; pass the folder that holds the images "
        f"(or one subfolder per class), e.g. an unpacked train/ folder.")
  if not os.path.isdir(root):
    raise FileNotFoundError(
        f"image folder path={root!r} is a file, not a folder; pass the folder that holds the "
        f"images (or one subfolder per class).")

  start = time.monotonic()
  paths, labels, class_names = _find_image_files(root)
  if not paths:
    raise ValueError(
        f"image folder {root!r} holds no image files (looked for {', '.join(IMAGE_EXTENSIONS)}, "
        f"any case, in it and its subfolders); check the path, and unpack archives first.")

  images, kept = _decode_files(paths, image_size, channels)
  if len(kept) != len(paths):
    bad = np.setdiff1d(np.arange(len(paths)), kept)
    bad_paths = [paths[i] for i in bad[:_MAX_PATHS_IN_MESSAGE]]
    more = f" and {len(bad) - len(bad_paths)} more" if len(bad) > len(bad_paths) else ""
    if on_corrupt == "stop":
      raise ValueError(
          f"{len(bad)} of {len(paths)} files in image folder {root!r} could not be read or "
          f"decoded as images: {bad_paths}{more}. Remove or replace these files, or pass "
          f"on_corrupt='skip' to drop them.")
    logging.warning("Skipped %d of %d files in %s that could not be decoded: %s%s",
                    len(bad), len(paths), root, bad_paths, more)
    if not len(kept):
      raise ValueError(
          f"none of the {len(paths)} files in image folder {root!r} could be decoded (e.g. "
          f"{bad_paths}); check that they are JPEG or PNG images.")
  if labels is not None:
    labels = labels[kept]

  logging.info(
      "Loaded %d images from %s in %.1f s: [%d, %d, %d], %s.", len(kept), root,
      time.monotonic() - start, image_size, image_size, channels,
      f"{len(class_names)} classes {class_names[:10]}{'...' if len(class_names) > 10 else ''}"
      if class_names else "unlabeled")
  return ImageData(images=images, labels=labels, name=f"image_folder:{root}")


# ----------------------------------------------------------------------------
# TensorFlow Datasets.
# ----------------------------------------------------------------------------


def id_order(ids: np.ndarray, where: str = "the dataset") -> np.ndarray:
  """The permutation that sorts examples by the number at the end of their id.

  TFDS ids look like ``b"train_16399"``: the number is the example's index in
  the original archive. Ids must end in ``_<integer>`` and the integers must be
  distinct.

  Args:
    ids: bytes or str [N], one id per example.
    where: names the data in errors.

  Returns:
    int64 [N]: ``ids[order]`` runs in increasing index order.

  Raises:
    ValueError: an id without a trailing ``_<integer>``, or repeated indices.
  """
  index = np.empty(len(ids), np.int64)
  for i, raw in enumerate(ids):
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    _, _, tail = text.rpartition("_")
    if not tail.isdigit():
      raise ValueError(f"order_by_id: id {text!r} of {where} does not end in '_<integer>' (as "
                       f"'train_16399'); pass order_by_id=False to keep the stored order.")
    index[i] = int(tail)
  if len(np.unique(index)) != len(index):
    raise ValueError(f"order_by_id: {where} has repeated id numbers; pass order_by_id=False.")
  return np.argsort(index, kind="stable").astype(np.int64)


def _unavailable(error_type: type, reason: str, name: str, data_dir: Optional[str]) -> OSError:
  """``error_type(reason + how to get the data)``, with ``reason`` alone as its ``reason`` attribute.

  The advice suits training data; a caller loading other data (the trainer's
  evaluation split) words its own fixes around ``reason``.
  """
  error = error_type(f"{reason} {_how_to_get(name, data_dir)}")
  error.reason = reason
  return error


def _how_to_get(name: str, data_dir: Optional[str]) -> str:
  where = (f"data_dir={data_dir!r}" if data_dir
           else "the default TFDS data_dir (~/tensorflow_datasets)")
  return (f"To get it: run once with download=True on a machine with internet (it is written to "
          f"{where}); or point data_dir at a folder that already holds the prepared TFDS dataset "
          f"'{name}' (command line: --gin_bindings=\"data.tfds.data_dir = '/path/to/tensorflow_datasets'\"); "
          "or train from a folder of images (load_image_folder; command line: "
          "--gin_bindings=\"train.dataset = @data.image_folder\" "
          "--gin_bindings=\"data.image_folder.path = '/path/to/images'\" "
          "--gin_bindings=\"train.subset_rule = 'stratified'\", as a class-sorted folder's first 10% is one class).")


def _check_download_hosts(builder, name: str, data_dir: Optional[str]) -> None:
  """Raises at once if the builder's download hosts cannot be reached.

  Without this, an offline tfds.download_and_prepare retries for minutes.
  """
  try:
    urls = list(builder.url_infos or ())
  except Exception:  # pylint: disable=broad-except  (no checksums file: fall back)
    urls = []
  hosts = []
  for url in urls:
    parsed = urllib.parse.urlparse(url)
    if parsed.hostname:
      target = (parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443))
      if target not in hosts:
        hosts.append(target)
  hosts = hosts[:4] or [(_FALLBACK_HOST, 443)]

  unreachable = netcheck.unreachable_hosts(hosts, _NETWORK_TIMEOUT_S)
  if unreachable:
    raise _unavailable(
        ConnectionError,
        f"TFDS dataset '{name}' is not prepared in {builder.data_dir!r} and download=True, but its "
        f"download host(s) {unreachable} cannot be reached within {_NETWORK_TIMEOUT_S:g} s (no "
        f"internet?).", name, data_dir)


def _tfds_builder(name: str, data_dir: Optional[str]):
  # Imported here: it takes seconds, and only this source needs it.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(
        f"name={name!r} is not a TFDS dataset this tensorflow_datasets knows; check the spelling "
        f"(e.g. 'cifar10', 'mnist'; tfds.list_builders() lists them all) or use load_image_folder "
        f"for a folder of images.") from e


def load_tfds(name: str = "cifar10", *, split: str = "train", data_dir: Optional[str] = None,
              download: bool = True, image_size: Optional[int] = None,
              channels: Optional[int] = None, image_key: str = "image",
              label_key: Optional[str] = "label", order_by_id: bool = False) -> ImageData:
  """Loads a TFDS image dataset split into memory.

  With download=False the dataset must already be prepared in ``data_dir``;
  if it is not, this fails at once with instructions. With download=True an
  unprepared dataset is downloaded and prepared, after a quick check (a few
  seconds) that its download hosts are reachable.

  Args:
    name: TFDS name, optionally with config/version ("cifar10", "mnist:3.*.*").
    split: TFDS split string ("train", "test", "train[:10%]", ...).
    data_dir: TFDS data folder; None for TFDS's default.
    download: download and prepare the dataset if it is missing (default;
      offline it fails within seconds, naming the offline routes).
    image_size: output side; None keeps the native size (which must then be
      square and the same for all images). Otherwise the short side is scaled
      to image_size and the center is cropped, as in load_image_folder.
    channels: 1 or 3 to convert; None keeps the dataset's channels.
    image_key: feature holding the image.
    label_key: feature holding an integer class label; None for no labels.
    order_by_id: put the examples in the order of the number in their ``id``
      feature (``train_16399`` -> 16399) instead of TFDS's stored order. TFDS
      stores CIFAR-10/100 shuffled by a hash of the index; the id keeps the
      index of the original archive, which is torchvision's order, so with this
      the "first 10%" is the Re-GAN reference's first 10%.

  Returns:
    ImageData named ``name`` for the train split, else "<name>:<split>", with
    ":id_order" appended when ``order_by_id`` (the order changes which examples
    a "first" subset keeps, and caches are keyed on the name).

  Raises:
    FileNotFoundError: not prepared and download=False.
    ConnectionError: download=True but the download hosts are unreachable.
    ValueError: unknown dataset, missing feature keys, bad arguments.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"name must be a TFDS dataset name such as 'cifar10', got {name!r}.")
  if not isinstance(split, str) or not split:
    raise ValueError(f"split must be a TFDS split string such as 'train', got {split!r}.")
  if not isinstance(download, bool):
    raise ValueError(f"download must be True or False, got {download!r}.")
  if image_size is not None:
    image_size = _check_image_size(image_size)
  if channels is not None:
    channels = _check_channels(channels)
  if not isinstance(order_by_id, bool):
    raise ValueError(f"order_by_id must be True or False, got {order_by_id!r}.")

  start = time.monotonic()
  builder = _tfds_builder(name, data_dir)
  features = builder.info.features
  feature_keys = sorted(features.keys()) if hasattr(features, "keys") else []
  if image_key not in feature_keys:
    raise ValueError(f"image_key={image_key!r} is not a feature of TFDS dataset '{name}'; its "
                     f"features are {feature_keys}.")
  if label_key is not None and label_key not in feature_keys:
    raise ValueError(f"label_key={label_key!r} is not a feature of TFDS dataset '{name}'; its "
                     f"features are {feature_keys}. Pass label_key=None for unlabeled data.")
  if order_by_id and "id" not in feature_keys:
    raise ValueError(f"order_by_id=True needs an 'id' feature, but TFDS dataset '{name}' has only "
                     f"{feature_keys}; pass order_by_id=False to keep TFDS's stored order.")

  # Read first, download only if that fails as "not prepared" (also what tfds.testing.mock_data serves).
  try:
    dataset = builder.as_dataset(split=split, shuffle_files=False)
  except AssertionError as e:  # how tfds reports "not prepared"
    if builder.is_prepared():
      raise
    if not download:
      raise _unavailable(
          FileNotFoundError,
          f"TFDS dataset '{name}' is not prepared in {builder.data_dir!r} and download=False.",
          name, data_dir) from e
    _check_download_hosts(builder, name, data_dir)
    builder.download_and_prepare()
    dataset = builder.as_dataset(split=split, shuffle_files=False)

  def _prepare(example):
    image = example[image_key]
    if image.dtype != tf.uint8:
      raise ValueError(f"TFDS feature {image_key!r} of '{name}' has dtype {image.dtype.name}; "
                       f"only uint8 images are supported.")
    if image.shape.rank == 2:
      image = image[..., None]
    if channels is not None:
      image = _convert_channels(image, channels)
    if image_size is not None:
      image = _resize_short_side_and_center_crop(image, image_size)
    label = (tf.cast(example[label_key], tf.int64) if label_key is not None
             else tf.zeros([], tf.int64))
    example_id = example["id"] if order_by_id else tf.constant(b"")
    return image, label, example_id

  dataset = dataset.map(_prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  images, labels, ids = [], [], []
  # Batch only when every image has the same shape; otherwise gather one by one.
  batch = 1024 if dataset.element_spec[0].shape.is_fully_defined() else 1
  for image_batch, label_batch, id_batch in dataset.batch(batch).prefetch(2).as_numpy_iterator():
    images.append(image_batch)
    labels.append(label_batch)
    ids.append(id_batch)
  if not images:
    raise ValueError(f"split={split!r} of TFDS dataset '{name}' is empty.")
  shapes = {x.shape[1:] for x in images}
  if len(shapes) > 1:
    raise ValueError(f"TFDS dataset '{name}' has images of different sizes (e.g. "
                     f"{sorted(shapes)[:3]}); pass image_size to resize them to one square size.")
  images = np.concatenate(images)
  if images.shape[1] != images.shape[2]:
    raise ValueError(f"TFDS dataset '{name}' has non-square images {images.shape[1:3]}; pass "
                     f"image_size to scale and center-crop them to a square.")
  labels = np.concatenate(labels).astype(np.int64) if label_key is not None else None
  data_name = name if split == "train" else f"{name}:{split}"
  if order_by_id:
    order = id_order(np.concatenate(ids), f"TFDS dataset '{name}' split {split!r}")
    images, labels = images[order], None if labels is None else labels[order]
    data_name += ":id_order"
  data = ImageData(images=images, labels=labels, name=data_name)
  logging.info("Loaded TFDS %s split %r in %.1f s: images %s.", name, split,
               time.monotonic() - start, data.images.shape)
  return data
