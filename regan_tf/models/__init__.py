"""GAN architectures by name.

Each architecture module (``dcgan``, ``sngan``, ``autogan``, ``progan``,
``stylegan2``) has the same builder,
``build(*, image_size, channels, z_dim=128, **arch_kwargs) -> GAN``, and
:func:`build` picks one by name. The generator is a Functional ``keras.Model``,
so that TFMOT can clone it and wrap its layers: standard Dense/Conv layers
(dcgan, sngan, autogan) or custom layers that implement TFMOT's
``PrunableLayer`` protocol and name their connection weights in
``get_prunable_weights()`` (ProGAN's equalized-lr layers, StyleGAN2's
modulated convolutions and mapping). Layers have unique, structured names
(``block1_conv1``, ``b8_torgb``, ...) for excluding layers from pruning by name.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Mapping, Sequence

from regan_tf.compat import keras

__all__ = ["GAN", "build", "names"]


@dataclasses.dataclass
class GAN:
  """A generator/discriminator pair.

  Attributes:
    generator: Functional model, z float32 [B, z_dim] -> images float32
      [B, H, W, C] in [-1, 1] (float32 even under mixed precision).
    discriminator: model, images [B, H, W, C] -> logits float32 [B, 1].
    z_dim: size of the latent vector the generator takes.
    progressive: for ProGAN, the :class:`regan_tf.models.progan.ProGAN` that
      holds the layers of every stage (``generator`` and ``discriminator`` are
      its final stage), which a trainer with a growth schedule grows; None for
      the other architectures.
  """
  generator: keras.Model
  discriminator: keras.Model
  z_dim: int
  progressive: Any = None


def check_positive_int(builder: str, arg: str, value: Any, fix: str) -> None:
  """Raises ValueError unless ``value`` is a positive int (used by the builders)."""
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"{builder}: {arg}={value!r} must be a positive integer; {fix}")


def check_choice(builder: str, arg: str, value: Any, allowed: Sequence[Any]) -> None:
  """Raises ValueError unless ``value`` is one of ``allowed`` (the message lists them)."""
  if value not in allowed:
    raise ValueError(f"{builder}: {arg}={value!r} is not allowed; pass one of "
                     f"{', '.join(repr(a) for a in allowed)}.")


def check_builder_args(build: Callable[..., Any], args: Mapping[str, Any], *,
                       image_sizes: Sequence[int], resize_fix: str,
                       positive: Sequence[str] = ()) -> None:
  """The argument checks every architecture's ``build`` starts with.

  ``image_size`` must be one of ``image_sizes``; ``channels``, ``z_dim`` and the
  arguments named in ``positive`` must be positive ints. A message names the
  builder (``<module>.build``), the argument, its value and what is allowed,
  and suggests the builder's own default as the fix.

  Args:
    build: the builder, whose signature gives the defaults.
    args: the builder's arguments by name (its ``locals()``).
    image_sizes: the supported image sizes, listed in the message.
    resize_fix: what to do about an unsupported size (ends the message).
    positive: further arguments that must be positive ints (widths, ...).

  Raises:
    ValueError: for the first bad argument, in the order image_size, channels,
      z_dim, ``positive``.
  """
  where = f"{build.__module__.rsplit('.', 1)[-1]}.{build.__name__}"
  image_size = args["image_size"]
  if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size not in image_sizes:
    raise ValueError(f"{where}: image_size={image_size!r} is not supported; allowed: "
                     f"{', '.join(map(str, image_sizes))}. {resize_fix}")
  defaults = inspect.signature(build).parameters
  for arg in ("channels", "z_dim", *positive):
    fix = ("pass 3 for RGB or 1 for grayscale." if arg == "channels"
           else f"pass e.g. {arg}={defaults[arg].default!r} (the default).")
    check_positive_int(where, arg, args[arg], fix)


# The architecture modules import GAN and the checks from this package,
# so they are imported after those are defined.
from regan_tf.models import autogan  # noqa: E402
from regan_tf.models import dcgan  # noqa: E402
from regan_tf.models import progan  # noqa: E402
from regan_tf.models import sngan  # noqa: E402
from regan_tf.models import stylegan2  # noqa: E402

_BUILDERS: dict[str, Callable[..., GAN]] = {
    "autogan": autogan.build,
    "dcgan": dcgan.build,
    "progan": progan.build,
    "sngan": sngan.build,
    "stylegan2": stylegan2.build,
}


def names() -> tuple[str, ...]:
  """The architecture names :func:`build` accepts, sorted."""
  return tuple(sorted(_BUILDERS))


def build(name: str, *, image_size: int, channels: int, z_dim: int = 128,
          **arch_kwargs: Any) -> GAN:
  """Builds the architecture ``name``.

  Args:
    name: one of :func:`names` ('autogan', 'dcgan', 'progan', 'sngan', 'stylegan2').
    image_size: height = width of the images, in pixels.
    channels: image channels (3 for RGB, 1 for grayscale).
    z_dim: latent size.
    **arch_kwargs: the architecture's own keyword arguments (widths, spectral
      norm, ...); see ``dcgan.build``, ``sngan.build``, ``autogan.build``,
      ``progan.build`` and ``stylegan2.build``.

  Returns:
    The :class:`GAN`.

  Raises:
    ValueError: unknown ``name``; the message lists the valid names.
  """
  if not isinstance(name, str) or name not in _BUILDERS:
    raise ValueError(f"models.build: name={name!r} is not a known architecture; valid names: "
                     f"{', '.join(names())}. Pass one of them (e.g. name='sngan').")
  return _BUILDERS[name](image_size=image_size, channels=channels, z_dim=z_dim, **arch_kwargs)
