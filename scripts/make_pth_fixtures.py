"""Writes small PyTorch checkpoints for the weight-reader tests (tests/fixtures/).

Run once with torch (not a project dependency), e.g. the venv described in
scripts/make_efficientnet_reference.py:

  /tmp/torchenv/bin/python scripts/make_pth_fixtures.py

Produced with torch 2.13.0 (CPU). Writes tiny_zip.pth (zip format), tiny_legacy.pth
(legacy format, _use_new_zipfile_serialization=False) and tiny_expected.npz
(the same tensors as numpy arrays).
"""

import collections
import os

import numpy as np
import torch

HERE = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def main():
  g = torch.Generator().manual_seed(0)
  base = torch.randn(4, 6, generator=g)
  sd = collections.OrderedDict()
  sd["conv.weight"] = torch.randn(2, 3, 3, 3, generator=g)
  sd["conv.bias"] = torch.randn(2, generator=g)
  sd["strided"] = base.t()  # non-contiguous view
  sd["offset"] = base[1:3, 2:]  # shares storage with "strided", at an offset
  sd["half"] = torch.randn(5, generator=g).half()
  sd["bn.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
  sd["long"] = torch.arange(6, dtype=torch.int64).reshape(2, 3)
  sd["empty"] = torch.zeros(0, 3)
  torch.save(sd, os.path.join(HERE, "tiny_zip.pth"))
  torch.save(sd, os.path.join(HERE, "tiny_legacy.pth"), _use_new_zipfile_serialization=False)
  np.savez(os.path.join(HERE, "tiny_expected.npz"), **{k: v.numpy() for k, v in sd.items()})
  wrapped = {"state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items()), "epoch": 3}
  torch.save(wrapped, os.path.join(HERE, "tiny_wrapped.pth"))


if __name__ == "__main__":
  main()
