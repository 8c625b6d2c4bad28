"""A dry run of every paper flagfile on an ImageNet-layout folder with real
WordNet-ID names and random images, with random weights and tiny steps and
sizes given on the command line: a user who spends hours of accelerator time
on the paper's setting must not meet a crash or a wrong class mapping at the
end. Each flagfile runs as a user would run it (`python -m launch.X
--flagfile=launch/flags/Y.flags --weights=random ...`)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import fast_compile_env
from fvjax.models import labels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TENCH, KIT_FOX, TIGER_CAT = "n01440764", "n02119789", "n02123159"  # InceptionV1 logits 449, 1 and (table)
WNIDS = (TENCH, KIT_FOX, TIGER_CAT)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
  """``root/<wnid>/<image>.JPEG``: 3 classes x 3 random images of odd sizes."""
  root = tmp_path_factory.mktemp("imagenet") / "val"
  rng = np.random.default_rng(0)
  for wnid in WNIDS:
    (root / wnid).mkdir(parents=True)
    for i in range(3):
      shape = (int(rng.integers(40, 70)), int(rng.integers(40, 70)), 3)
      Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / wnid / f"ILSVRC2012_val_{i:08d}.JPEG")
  return str(root)


def _launch(script, flagfile, *overrides, timeout=600, fast_compile=True):
  """``fast_compile=False`` where the run's time goes to full-size forward passes, which XLA's unoptimised code
  runs slowly (measured: the sanity check's dry run 39 s optimised vs 56 s fast-compiled, silent units 52 vs
  64 s; the fooling dry run the other way, 78 vs 57 s)."""
  cmd = [sys.executable, "-m", f"launch.{script}", f"--flagfile=launch/flags/{flagfile}", "--weights=random",
         *overrides]
  env = fast_compile_env() if fast_compile else None
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "weights: random" in proc.stdout  # a random network never goes unannounced
  return proc


def _metrics(workdir):
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)


def test_imagenet_and_tpu_flags_use_inception_v1s_own_logits(imagenet_dir, tmp_path):
  work = str(tmp_path / "sanity")
  # --per_class=3 (all 3 images): each class's forward pass has the padded shape of the 3 visualizations' (4), so
  # one program serves both.
  tiny = ("--steps=2", "--size=32", "--per_class=3", "--num_bootstrap=10", f"--imagenet_dir={imagenet_dir}",
          f"--workdir={work}")
  _launch("sanity_check", "imagenet.flags", *tiny, fast_compile=False)
  metrics = _metrics(work)
  inception = labels.inception_v1_wnids()
  assert metrics["class_wnids"] == list(WNIDS)
  assert metrics["classes"] == [449, 1, inception.index(TIGER_CAT)]  # not the folder positions 0, 1, 2
  assert metrics["weights"] == "random" and metrics["model"] == "inception_v1"
  assert metrics["layers"][0] == "conv2d0" and metrics["layers"][-1] == "logits" and len(metrics["layers"]) == 13
  # tpu.flags is imagenet.flags with a larger render batch (test_launch checks its lines; resuming is test_store's).


def test_fooling_imagenet_flags_permute_the_1000_classes(imagenet_dir, tmp_path):
  work = str(tmp_path / "fooling")
  # Training, held-out and shown units 3 each, all at 32 px: every render of the original model is one compiled
  # program; the manipulated model's is the other.
  _launch("fooling_circuit", "fooling_imagenet.flags", f"--natural_dir={imagenet_dir}", "--units=101-103",
          "--heldout_units=1-3", "--thresholds=1,2", "--render_batch=3", "--render_size=32", "--detector_size=32",
          "--detector_steps=2", "--detector_batch=4", "--steps=1,2", "--show_units=1,449,1000", "--size=32",
          "--natural_crops=0", f"--workdir={work}")
  metrics = _metrics(work)
  assert metrics["shown_units"] == [101, 549, 100]  # class i shows class i + 100 among logits 1..1000
  assert metrics["weights"] == "random" and metrics["num_manipulated_units"] == 1008
  assert metrics["margin"]["k"] == 250.0
  # Held-out files of WordNet-ID folders: top-1/top-5 of both models, labels read through lucent's order.
  accuracy = metrics["accuracy"]
  assert accuracy["original"]["num_images"] == metrics["num_natural_images"] > 0
  assert 0 <= accuracy["manipulated"]["top1"] <= accuracy["manipulated"]["top5"] <= 1


def test_silent_imagenet_flags_run_on_resnet50(imagenet_dir, tmp_path):
  work = str(tmp_path / "silent")
  _launch("silent_units", "silent_imagenet.flags", f"--calibration_dir={imagenet_dir}",
          f"--heldout_dir={imagenet_dir}", "--heldout_per_class=1", "--target_steps=2", "--steps=2", "--size=32",
          "--units=511", f"--workdir={work}", fast_compile=False)  # one unit: its render is the target's program
  metrics = _metrics(work)
  assert metrics["model"] == "resnet50" and metrics["layer"] == "layer4_1/conv2" and metrics["num_units"] == 512
  assert metrics["rescale"] == "energy" and metrics["weights"] == "random"
  assert metrics["bias_margin"] == 0.0  # the paper's bias: its 50,000 calibration images need no margin
  assert metrics["calibration_silent_fraction"] == 1.0 and metrics["calibration_logits_bit_identical"]


def test_causal_imagenet_flags_study_the_pre_relu_units(imagenet_dir, tmp_path):
  work = str(tmp_path / "causal")
  _launch("causal_benchmark", "causal_imagenet.flags", f"--natural_dir={imagenet_dir}",
          "--units=mixed3a_pre_relu:189,mixed3a_pre_relu:227", "--top_k=1", "--stride=112", "--blur_stride=112",
          "--num_references=2", "--steps=2", "--render_size=32", "--chunk=8", f"--workdir={work}")
  metrics = _metrics(work)
  assert metrics["weights"] == "random" and metrics["model"] == "inception_v1"
  assert metrics["layer"] == "mixed3a_pre_relu" and metrics["units"] == [189, 227]
  assert set(metrics["conditions"]) == {"synthetic", "natural", "mixed", "blurred", "none"}
