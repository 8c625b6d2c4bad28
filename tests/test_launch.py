"""The launch scripts end to end, in reduced mode (each in its own process)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import fast_compile_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, tiny=True):
  # Tiny models: compile fast (fast_compile_env); the real model keeps XLA's default optimisation.
  out = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env=fast_compile_env() if tiny else None)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


def test_visualize_writes_pngs_grid_and_metrics(tmp_path):
  stdout = _run("launch.visualize", "--model=tiny_cnn", "--layer=conv3", "--units=0-2", "--steps=4",
                "--thresholds=2", f"--workdir={tmp_path}")
  metrics = json.load(open(tmp_path / "metrics.json"))
  assert set(metrics["units"]) == {"0", "1", "2"}
  assert set(metrics["units"]["1"]["value_at_threshold"]) == {"2", "4"}
  assert metrics["num_natural_images"] == 18
  for u in range(3):
    assert (tmp_path / f"unit_{u}.png").stat().st_size > 0
  assert (tmp_path / "grid.png").exists() and "conv3:1" in stdout


@pytest.mark.slow
def test_sanity_check_demo_flagfile_reduced(tmp_path):
  # Resuming is tested in-process by test_sanity_check.py (folder mode).
  args = ("launch.sanity_check", "--flagfile=launch/flags/demo.flags", "--steps=2", "--size=64", "--num_classes=3",
          "--crops_per_photo=2", "--layers=stem,block7,logits", "--num_bootstrap=50", f"--workdir={tmp_path}")
  _run(*args, tiny=False)
  metrics = json.load(open(tmp_path / "metrics.json"))
  assert metrics["num_classes"] == 3 and metrics["layers"] == ["stem", "block7", "logits"]
  for layer in metrics["layers"]:
    m = metrics["per_layer"][layer]
    assert m["normalized_ci"][0] <= m["normalized"] <= m["normalized_ci"][1]
    assert -1 <= m["s_fv"] <= 1 and m["s_same"] > m["s_diff"] - 0.5
  for name in ("path_similarity.png", "visualizations.png"):
    assert (tmp_path / name).exists(), name
  assert list((tmp_path / "store").glob("visualizations-*.npz"))  # the rendered chunk, kept for a resume


def test_bad_input_is_one_sentence_not_a_traceback(tmp_path):
  out = subprocess.run([sys.executable, "-m", "launch.visualize", "--model=tiny_cnn", "--layer=conv33",
                        f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 2
  assert "error: Unknown layer 'conv33' in model 'tiny_cnn'" in out.stderr and "Did you mean 'conv3'" in out.stderr
  assert "Traceback" not in out.stderr


LAUNCH_MODULES = ("classify", "visualize", "sanity_check", "train_detector", "fooling_circuit", "silent_units",
                  "theory", "causal_benchmark")


CHECK_HELP = """
import importlib, sys
from absl import flags
name = sys.argv[1]
module = importlib.import_module(name)
assert module.__doc__ and "python -m " + name in module.__doc__, "docstring must open with the command"
for module_name in (name, "launch.model_flags"):
  for flag in flags.FLAGS.get_flags_for_module(module_name):
    assert flag.help and len(flag.help) > 10, flag.name
print(len(flags.FLAGS.get_flags_for_module(name)))
"""


@pytest.mark.parametrize("name", LAUNCH_MODULES)
def test_every_flag_is_described(name):
  # One process per script: absl flags are global, and several scripts share names such as --steps.
  out = subprocess.run([sys.executable, "-c", CHECK_HELP, f"launch.{name}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert int(out.stdout) > 0
