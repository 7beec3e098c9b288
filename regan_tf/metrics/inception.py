"""TF-GAN's Inception network (TF-Hub) as a feature extractor: real FID / IS / KID.

The module is the one TF-GAN's own ``inception_metrics`` uses,
``https://tfhub.dev/tensorflow/tfgan/eval/inception/1``: images float32 in
[-1, 1] at 299 x 299 x 3 -> ``pool_3`` (2048 features) and ``logits`` (1008
classes). Images are resized bilinearly to 299 and grayscale is repeated to
RGB. Published FIDs also depend on the resize and the JPEG/PNG decoding of the
real images, so compare numbers computed with the same pipeline.

Offline use: download the module once on a machine with internet,

    wget -O inception.tar.gz 'https://tfhub.dev/tensorflow/tfgan/eval/inception/1?tf-hub-format=compressed'
    mkdir inception && tar -xzf inception.tar.gz -C inception

and pass ``inception_path='inception'`` (``--inception_path`` in the tools).
Modules already in the TF-Hub cache (``$TFHUB_CACHE_DIR``, default
``<tmp>/tfhub_modules``) are used without a network check. Otherwise, before
TF-Hub starts a download (which retries for minutes when offline), the
download host is probed for a few seconds and a missing network is reported at
once, with these instructions.
"""

from __future__ import annotations

import hashlib
import os
from typing import Optional, Sequence, Tuple

from absl import logging

from regan_tf import netcheck
from regan_tf.compat import tf
from regan_tf.metrics.extractors import FeatureExtractor

__all__ = ["INCEPTION_TFHUB", "InceptionExtractor", "load_inception"]

INCEPTION_TFHUB = "https://tfhub.dev/tensorflow/tfgan/eval/inception/1"
INCEPTION_SIZE = 299
# Hosts a TF-Hub download must reach; probed before hub.load when the module
# is neither given by path nor cached.
DOWNLOAD_HOSTS: Sequence[Tuple[str, int]] = (("tfhub.dev", 443),)
PROBE_TIMEOUT_S = 3.0


def _how_to_get() -> str:
  return (f"Download it on a machine with internet: wget -O inception.tar.gz "
          f"'{INCEPTION_TFHUB}?tf-hub-format=compressed' && mkdir inception && tar -xzf "
          f"inception.tar.gz -C inception; then pass inception_path=<that folder> "
          f"(--inception_path=... for tools/eval.py and tools/fid_stats.py), or use the offline "
          f"classifier extractor (extractor='classifier') for labelled data.")


def _hub_cached_path(handle: str) -> Optional[str]:
  """The TF-Hub cache folder of ``handle`` if a finished download is there."""
  from tensorflow_hub import resolver  # pylint: disable=g-import-not-at-top
  cache_dir = resolver.tfhub_cache_dir(use_temp=True)
  path = os.path.join(cache_dir, hashlib.sha1(handle.encode("utf8")).hexdigest())
  return path if os.path.exists(os.path.join(path, "saved_model.pb")) else None


class InceptionExtractor(FeatureExtractor):
  """TF-GAN Inception: ``pool_3`` features [N, 2048] and logits [N, 1008]."""

  name = "inception"
  cache_id = "inception-tfgan-eval-1"
  input_size = INCEPTION_SIZE
  input_channels = 3

  def __init__(self, module, source: str):
    self._module = module
    self.source = source

  def _features_and_logits(self, images: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    outputs = self._module(images)
    return outputs["pool_3"], outputs["logits"]


def load_inception(inception_path: Optional[str] = None) -> InceptionExtractor:
  """Loads TF-GAN's Inception module from a local folder, the TF-Hub cache, or TF-Hub.

  Args:
    inception_path: folder of the unpacked module (holds ``saved_model.pb``);
      None to use the TF-Hub cache or download (needs internet).

  Raises:
    FileNotFoundError: ``inception_path`` is not a module folder.
    ConnectionError: no path, not cached, and tfhub.dev is unreachable within
      a few seconds; the message says what to download and where to point.
  """
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top  (slow import, only here)

  if inception_path is not None:
    path = os.path.abspath(os.path.expanduser(inception_path))
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
      raise FileNotFoundError(
          f"inception_path={inception_path!r} is not an unpacked TF-Hub module (no saved_model.pb "
          f"in {path!r}; unpack the .tar.gz into a folder and point at it). " + _how_to_get())
    source = path
  else:
    source = _hub_cached_path(INCEPTION_TFHUB)
    if source is None:
      unreachable = netcheck.unreachable_hosts(DOWNLOAD_HOSTS, PROBE_TIMEOUT_S)
      if unreachable:
        raise ConnectionError(
            f"The Inception network for FID/IS/KID is not available offline: inception_path is "
            f"not set, it is not in the TF-Hub cache, and {unreachable} cannot be reached within "
            f"{PROBE_TIMEOUT_S:g} s (no internet?). " + _how_to_get())
      source = INCEPTION_TFHUB
  logging.info("Loading the Inception module from %s.", source)
  return InceptionExtractor(hub.load(source), source)
