"""The launch scripts end to end, in reduced mode (each in its own process)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import fast_compile_env
from fvjax import launch
from fvjax.launch import console

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


CHECK_HELP = r"""
import importlib, sys
from absl import flags
name = sys.argv[1]
module = importlib.import_module(name)
assert module.__doc__ and "python -m " + name in module.__doc__, "docstring must open with the command"
for module_name in (name, "fvjax.launch.model_flags", "fvjax.launch.detector_flags"):
  for flag in flags.FLAGS.get_flags_for_module(module_name):
    assert flag.help and len(flag.help) > 10, flag.name
# Every docstring example (its shipped flagfiles expanded) names only flags the script defines.
from fvjax import launch
examples = module.__doc__.replace("\\\n", " ").split("python -m " + name)[1:]
assert examples
for example in examples:
  args = launch.expand_flagfiles(example.splitlines()[0].split())
  for arg in args:
    flag = arg.split("=")[0].lstrip("-")
    assert flag in flags.FLAGS or (flag.startswith("no") and flag[2:] in flags.FLAGS), (example, flag)
print(len(flags.FLAGS.get_flags_for_module(name)))
"""


@pytest.mark.parametrize("name", LAUNCH_MODULES)
def test_every_flag_is_described(name):
  # One process per script: absl flags are global, and several scripts share names such as --steps.
  out = subprocess.run([sys.executable, "-c", CHECK_HELP, f"fvjax.launch.{name}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert int(out.stdout) > 0


def test_checkout_entry_modules_delegate_to_the_package():
  # launch/<name>.py (python -m launch.<name> in a checkout) only calls fvjax.launch.console; launch/flags is the
  # shipped folder, not a copy.
  for name in LAUNCH_MODULES:
    source = open(os.path.join(ROOT, "launch", f"{name}.py")).read()
    assert f"console.{name}()" in source and "flags." not in source, name
    assert hasattr(console, name)
  assert os.path.samefile(os.path.join(ROOT, "launch", "flags"), launch.FLAGFILES)


def test_help_lists_the_scripts_own_and_shared_flags():
  # From the checkout's launch/ module: absl alone would list no flag (they live in fvjax.launch.*).
  out = subprocess.run([sys.executable, "-m", "launch.fooling_circuit", "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 1 and out.stdout.startswith("The fooling circuit"), out.stderr[-2000:]
  for flag in ("--show_units", "--manipulate_units", "--model", "--weights", "--model_options",  # own, shared
               "--units", "--heldout_units", "--detector_steps"):  # the detector flags it shares
    assert f"\n  {flag}:" in out.stdout, flag
  assert "--flagfile=NAME" in out.stdout and "fooling_demo" in out.stdout
  assert "--xla_" not in out.stdout and "--verbosity" not in out.stdout  # only what a user needs; --helpfull: all


def test_help_keeps_a_long_install_path_whole(monkeypatch):
  # An installed package's flagfile folder can be longer than a help line (a pytest-xdist venv in CI was).
  long_folder = "/" + "/".join(["site-packages-of-a-deeply-nested-virtual-environment"] * 3) + "/fvjax/launch/flags"
  monkeypatch.setattr(launch, "FLAGFILES", long_folder)
  monkeypatch.setattr(launch, "shipped_flagfiles", lambda: ["demo", "fooling_demo"])
  note = launch.flagfile_note()
  assert long_folder + ")." in note.split() and "demo, fooling_demo;" in note.replace("\n", " ")


def test_flagfile_names_the_shipped_flagfiles_also_inside_flagfiles(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # no flagfile here: names resolve to the shipped ones
  demo = launch.expand_flagfiles(["--flagfile=demo.flags"])
  assert demo and demo == launch.expand_flagfiles(["--flagfile=demo"]) == launch.expand_flagfiles(["--flagfile",
                                                                                                   "demo"])
  imagenet = launch.expand_flagfiles(["--flagfile=imagenet"])
  assert launch.expand_flagfiles(["--seed=1", "--flagfile=tpu", "--steps=3"]) == [  # tpu.flags includes imagenet
      "--seed=1", *imagenet, "--render_batch=1000", "--workdir=workdir/imagenet_tpu", "--steps=3"]
  (tmp_path / "mine.flags").write_text("# mine\n--flagfile=demo\n  \n--steps=7\n")
  (tmp_path / "demo").write_text("--size=9\n")  # an existing path wins over a shipped name
  assert launch.expand_flagfiles(["--flagfile=mine.flags", "--", "--flagfile=x"]) == ["--size=9", "--steps=7", "--",
                                                                                        "--flagfile=x"]
  (tmp_path / "loop.flags").write_text("--flagfile=loop.flags\n")
  with pytest.raises(ValueError, match="includes itself"):
    launch.expand_flagfiles(["--flagfile=loop.flags"])
  with pytest.raises(ValueError, match=r"--flagfile=sub/demo.flags .*shipped flagfile \(causal_demo, .*tpu\)"):
    launch.expand_flagfiles(["--flagfile=sub/demo.flags"])  # a path is never replaced by a shipped name
