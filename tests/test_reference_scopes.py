"""Which generator tensors Re-GAN prunes, counted against the Re-GAN reference's parameter lists.

The reference (github.com/IntellicentAI-Lab/Re-GAN at commit 785135c) masks, in every
architecture's ``regan.py``, each tensor of ``model.named_parameters()`` (StyleGAN2: each whose name
lacks ``to_rgb``). The lists below are derived by reading the reference's model code (file:line
cited at each entry); the tests build regan_tf's generators with the settings the paper configs use
and compare the pruned tensors' element counts, tensor by tensor (layouts differ: NCHW vs NHWC).
See docs/FIDELITY.md.
"""

from __future__ import annotations

import collections
import math

from regan_tf import models
from regan_tf import pruning


def _sizes(named_shapes):
  return sorted(math.prod(shape) for _, shape in named_shapes)


def _pruned_sizes(generator, **kwargs):
  pruned = pruning.prune_generator(generator, **kwargs)
  return sorted(int(t.weight.shape.num_elements()) for t in pruning.pruned_tensors(pruned)), pruned


# ----------------------------------------------------------------- SNGAN ---

def reference_sngan_generator(z_dim=128):
  """``ResGenerator32(z_dim).named_parameters()``, SNGAN/model.py:96-158 at 785135c."""
  params = [("linear.weight", (4 * 4 * 256, z_dim)), ("linear.bias", (4 * 4 * 256,))]  # model.py:132
  for b in range(3):  # model.py:134-138, each ResGenBlock(256, 256) (model.py:96-111)
    p = f"blocks.{b}."
    params += [(p + "residual.0.weight", (256,)), (p + "residual.0.bias", (256,)),       # BatchNorm2d
               (p + "residual.3.weight", (256, 256, 3, 3)), (p + "residual.3.bias", (256,)),
               (p + "residual.4.weight", (256,)), (p + "residual.4.bias", (256,)),       # BatchNorm2d
               (p + "residual.6.weight", (256, 256, 3, 3)), (p + "residual.6.bias", (256,)),
               (p + "shortcut.1.weight", (256, 256, 1, 1)), (p + "shortcut.1.bias", (256,))]
  params += [("output.0.weight", (256,)), ("output.0.bias", (256,)),                        # model.py:140
             ("output.2.weight", (3, 256, 3, 3)), ("output.2.bias", (3,))]                  # model.py:142
  return params


def test_sngan_prunes_every_reference_parameter():
  # SNGAN/regan.py:16-20 keeps every named parameter; gin/sngan_cifar.gin: prune_biases_and_norms.
  reference = reference_sngan_generator()
  ours, _ = _pruned_sizes(models.sngan.build().generator, prune_biases_and_norms=True)
  assert len(reference) == 36
  assert ours == _sizes(reference)


# ------------------------------------------------------------- StyleGAN2 ---

def reference_stylegan2_generator(size, style_dim, n_mlp, channels):
  """``Generator(size, style_dim, n_mlp).named_parameters()``, StyleGAN2/model.py at 785135c.

  ``channels`` replaces the reference's width table (model.py:418-428: 512 up to 32x32) so the
  test can build a small network; the list of tensors does not depend on the widths.
  """
  def equal_linear(name, in_dim, out_dim):  # EqualLinear, model.py:138 (weight), 141 (bias)
    return [(f"{name}.weight", (out_dim, in_dim)), (f"{name}.bias", (out_dim,))]

  def styled_conv(name, cin, cout):  # StyledConv, model.py:345-358
    return ([(f"{name}.conv.weight", (1, cout, cin, 3, 3))]                    # model.py:211
            + equal_linear(f"{name}.conv.modulation", style_dim, cin)         # model.py:215
            + [(f"{name}.noise.weight", (1,)),                                # NoiseInjection, 309
               (f"{name}.activate.bias", (cout,))])                           # FusedLeakyReLU bias

  def to_rgb(name, cin):  # ToRGB, model.py:376-377
    return ([(f"{name}.conv.weight", (1, 3, cin, 1, 1))] + equal_linear(f"{name}.conv.modulation", style_dim, cin)
            + [(f"{name}.bias", (1, 3, 1, 1))])

  params = []
  for i in range(n_mlp):  # model.py:409-416 (style.0 is PixelNorm)
    params += equal_linear(f"style.{i + 1}", style_dim, style_dim)
  params.append(("input.input", (1, channels[4], 4, 4)))  # ConstantInput, model.py:323, 430
  params += styled_conv("conv1", channels[4], channels[4]) + to_rgb("to_rgb1", channels[4])  # 431-434
  cin, k = channels[4], 0
  for log_r in range(3, int(math.log2(size)) + 1):  # model.py:451-473
    cout = channels[2**log_r]
    params += styled_conv(f"convs.{k}", cin, cout) + styled_conv(f"convs.{k + 1}", cout, cout)
    params += to_rgb(f"to_rgbs.{log_r - 3}", cout)
    cin, k = cout, k + 2
  return params


def _reference_stylegan2_pruned(params):
  # StyleGAN2/regan.py:19-22: every parameter whose name lacks "to_rgb".
  return [(name, shape) for name, shape in params if "to_rgb" not in name]


def _tiny_stylegan2(**kwargs):
  # 16x16, 8 channels everywhere (channel_base 128 // 16), 8 mapping layers as the reference.
  return models.stylegan2.build(image_size=16, z_dim=8, w_dim=8, mapping_layers=8, channel_base=128,
                                channel_max=8, mbstd_group_size=2, **kwargs).generator


def test_stylegan2_prune_all_weights_prunes_the_reference_set():
  reference = _reference_stylegan2_pruned(
      reference_stylegan2_generator(16, style_dim=8, n_mlp=8, channels={4: 8, 8: 8, 16: 8}))
  # 8 mapping layers x 2 + the constant + 5 styled convs x 5 (kernel, affine kernel and bias, noise
  # strength, bias).
  assert len(reference) == 2 * 8 + 1 + 5 * 5
  ours, pruned = _pruned_sizes(_tiny_stylegan2(prune_all_weights=True), exclude=("torgb",))
  assert ours == _sizes(reference)
  names = [t.name for t in pruning.pruned_tensors(pruned)]
  assert any("const" in n for n in names)                    # the constant input is pruned
  assert sum("mapping_dense" in n for n in names) == 16      # so is the mapping network, with biases
  assert not any("torgb" in n for n in names)


def test_stylegan2_kernel_only_option_prunes_the_connections():
  ours, pruned = _pruned_sizes(_tiny_stylegan2(prune_all_weights=False), exclude=("torgb",))
  names = [t.name for t in pruning.pruned_tensors(pruned)]
  # mapping kernels (8) + per styled conv the conv kernel and the affine kernel (5 x 2).
  assert len(names) == 8 + 5 * 2 and all(n.endswith("kernel") for n in names)


# ---------------------------------------------------------------- ProGAN ---

def reference_progan_generator(z_dim, in_channel):
  """``Generator(z_dim, in_channel).named_parameters()``, ProGAN/model.py:126-150 at 785135c.

  ``equal_lr`` re-registers each ``weight`` as ``weight_orig`` after ``bias`` (model.py:23-25).
  """
  def conv(name, cin, cout, k):  # EqualConv2d, model.py:50-57
    return [(f"{name}.conv.bias", (cout,)), (f"{name}.conv.weight_orig", (cout, cin, k, k))]

  params = [("input_layer.0.conv.bias", (in_channel,)),  # EqualConvTranspose2d 4x4, model.py:131-132
            ("input_layer.0.conv.weight_orig", (z_dim, in_channel, 4, 4))]
  for r in (4, 8, 16, 32):  # ConvBlock: two 3x3 convs, model.py:106-110, 136-139
    params += conv(f"progression_{r}.conv.0", in_channel, in_channel, 3)
    params += conv(f"progression_{r}.conv.3", in_channel, in_channel, 3)
  for r in (4, 8, 16, 32):  # model.py:144-147
    params += conv(f"to_rgb_{r}", in_channel, 3, 1)
  return params


def test_progan_prune_all_weights_prunes_every_generator_tensor_as_the_reference():
  # ProGAN/regan.py:16-20 keeps every named parameter, to_rgb_* and biases included.
  reference = reference_progan_generator(z_dim=8, in_channel=16)
  assert len(reference) == 26
  # fmap_base 512 / fmap_max 16: 16 channels at every resolution, as the reference's in_channel.
  gan = models.progan.build(image_size=32, z_dim=8, fmap_base=512, fmap_max=16, prune_all_weights=True)
  growing = gan.progressive.growing_generator()
  ours, pruned = _pruned_sizes(growing)
  tensors = pruning.pruned_tensors(pruned)
  assert len(tensors) == len(pruned.trainable_variables)  # nothing trainable is left dense
  kinds = collections.Counter(("to_rgb" in t.name, t.name.rsplit("/", 1)[-1]) for t in tensors)
  assert kinds[(True, "kernel")] == kinds[(True, "bias")] == 4  # every stage's to_rgb, with bias
  # The one structural difference (documented in progan.py): the reference's 4x4 block has a second
  # 3x3 conv (progression_4.conv.3); without it the tensor sizes agree one for one.
  without_extra_conv = [p for p in reference if not p[0].startswith("progression_4.conv.3")]
  assert ours == _sizes(without_extra_conv)


def test_progan_default_prunes_kernels_only():
  gan = models.progan.build(image_size=32, z_dim=8, fmap_base=512, fmap_max=16)
  _, pruned = _pruned_sizes(gan.progressive.growing_generator())
  names = [t.name for t in pruning.pruned_tensors(pruned)]
  assert len(names) == 12 and all(n.endswith("kernel") for n in names)
