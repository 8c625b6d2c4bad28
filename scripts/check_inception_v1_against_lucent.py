r"""Writes a random lucent InceptionV1 (.pth) and its activations on random images, for comparing fvjax's port.

Needs torch and lucent's InceptionV1 source (not project dependencies). Run it with the Python of a
virtualenv that has torch, and give the folder holding lucent's modelzoo/inceptionv1 sources:

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch torch-lucent
  /tmp/torchenv/bin/python scripts/check_inception_v1_against_lucent.py \
      --lucent_dir=/tmp/torchenv/lib/python3.11/site-packages/lucent/modelzoo/inceptionv1 --out_dir=/tmp

It writes OUT_DIR/lucent_random.pth and OUT_DIR/lucent_ref.npz (the images x and the activations);
tests/test_model_zoo.py's reference values came from such a run.
"""

import argparse
import importlib.util
import os
import sys
import types

import numpy as np
import torch


def _load(name, path):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lucent_dir", required=True, help="folder of lucent's modelzoo/inceptionv1 sources")
  parser.add_argument("--out_dir", default=".", help="where to write lucent_random.pth and lucent_ref.npz")
  args = parser.parse_args()
  for name in ("lucent", "lucent.modelzoo", "lucent.modelzoo.inceptionv1"):  # only the two files are loaded
    sys.modules[name] = types.ModuleType(name)
  helper = _load("lucent.modelzoo.inceptionv1.helper_layers", os.path.join(args.lucent_dir, "helper_layers.py"))
  sys.modules["lucent.modelzoo.inceptionv1"].helper_layers = helper
  inception = _load("lucent.modelzoo.inceptionv1.InceptionV1", os.path.join(args.lucent_dir, "InceptionV1.py"))
  torch.manual_seed(0)
  model = inception.InceptionV1(pretrained=False, redirected_ReLU=False).eval()
  x = np.random.default_rng(0).uniform(size=(2, 224, 224, 3)).astype(np.float32)
  acts = {}
  for name in ("conv2d0", "conv2d1", "conv2d2", "mixed3a", "mixed4a", "mixed5b", "softmax2_pre_activation_matmul"):
    getattr(model, name).register_forward_hook(lambda mod, i, o, name=name: acts.__setitem__(name, o.detach().numpy()))
  with torch.no_grad():
    model(torch.from_numpy(x * 255 - 117).permute(0, 3, 1, 2))
  torch.save(model.state_dict(), os.path.join(args.out_dir, "lucent_random.pth"))
  np.savez(os.path.join(args.out_dir, "lucent_ref.npz"), x=x, **acts)
  print({k: v.shape for k, v in acts.items()})


if __name__ == "__main__":
  main()
