r"""Trains the CIFAR-10 ResNet FID extractor and writes its weights, log and hash.

    # /tmp/cifar10/train/<class>/*.jpg: CIFAR-10's training images (README "Metrics" says how to write
    # such a folder; in this project's workplace: tar xzf ../shared/data/cifar10-jpeg-train.tar.gz -C /tmp/cifar10)
    nohup nice -n 15 python tools/train_cifar_classifier.py --data_dir=/tmp/cifar10/train \
        --out=regan_tf/metrics/weights/cifar10_resnet.npz > /tmp/train_cifar.log 2>&1 &

Expected runtime: 25-50 min on 2 CPU cores depending on load (float32; see
regan_tf/metrics/cifar_resnet.py for why not bfloat16 on AVX2 CPUs).

Writes ``--out`` (the weights, with the settings, history and validation
accuracy inside), ``<out>.log.json`` (the same information, readable) and
``<out>.sha256``. The weights committed with the package came from this tool
with its default flags; committing them (1.5 MB) means every machine and CI
measure FID with bit-identical features, which retraining would not give
(oneDNN kernels differ across CPUs, so the same seed gives slightly different
weights and FID values on different machines).
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags

from regan_tf import cli  # noqa: E402  (light: no TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_bool("traceback", False, "On an error, print the full traceback.")
flags.DEFINE_string("data_dir", None, "The unpacked CIFAR-10 train/ folder (one subfolder per class).")
flags.DEFINE_string("out", "regan_tf/metrics/weights/cifar10_resnet.npz", "Weights file to write.")
flags.DEFINE_integer("epochs", 20, "Passes over the training images.")
flags.DEFINE_integer("batch_size", 256, "Images per SGD step.")
flags.DEFINE_float("peak_lr", 0.2, "Learning rate at the end of the warm-up.")
flags.DEFINE_integer("validation_per_class", 500, "Held-out images per class.")
flags.DEFINE_integer("seed", 0, "Seed of the split, initial weights, order and augmentation.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.data_dir:
    raise app.UsageError("--data_dir is required: a folder of CIFAR-10's training images, one subfolder per "
                         "class (README \"Metrics\" says how to write one), e.g. --data_dir=/tmp/cifar10/train.")
  # Imported here so that --help answers without loading TensorFlow.
  from regan_tf.data import load_image_folder
  from regan_tf.metrics import cifar_resnet
  from regan_tf.metrics.cifar_resnet_training import TrainConfig, train_classifier

  config = TrainConfig(epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, peak_lr=FLAGS.peak_lr,
                       validation_per_class=FLAGS.validation_per_class, seed=FLAGS.seed)
  data = load_image_folder(FLAGS.data_dir, image_size=32, channels=3)
  class_names = sorted(d for d in os.listdir(FLAGS.data_dir)
                       if os.path.isdir(os.path.join(FLAGS.data_dir, d)))
  print(f"Training on {data.num_examples} images from {FLAGS.data_dir}: {config}", flush=True)
  model, info = train_classifier(data, config, log=lambda line: print(line, flush=True))
  info["class_names"] = class_names
  info["data"] = os.path.basename(os.path.normpath(FLAGS.data_dir))  # no machine-specific paths
  sha256 = cifar_resnet.save_weights(model, FLAGS.out, info)
  # Check the file round-trips: the loaded extractor must score what training measured.
  extractor = cifar_resnet.load_cifar_resnet(FLAGS.out)
  from regan_tf.metrics.cifar_resnet_training import split_train_validation
  _, val_idx = split_train_validation(data.labels, config.validation_per_class, config.seed)
  if len(val_idx):
    _, logits = extractor.extract(data.images[val_idx])
    info["validation_accuracy_reloaded"] = float((logits.argmax(1) == data.labels[val_idx]).mean())
  info["sha256"] = sha256
  with open(FLAGS.out + ".log.json", "w") as f:
    json.dump(info, f, indent=1, sort_keys=True)
  with open(FLAGS.out + ".sha256", "w") as f:
    f.write(f"{sha256}  {os.path.basename(FLAGS.out)}\n")
  print(json.dumps({k: info[k] for k in ("validation_accuracy", "validation_accuracy_reloaded",
                                         "train_seconds", "params", "sha256") if k in info}))


if __name__ == "__main__":
  cli.run_command(main, flag_modules=[__name__])  # flag errors and a missing --data_dir: one line, exit 2
