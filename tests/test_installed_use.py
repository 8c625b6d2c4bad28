"""fvjax installed from a wheel, as a user installs it: console scripts, ``python -m fvjax.launch.<name>``,
shipped flagfiles by name, and no top-level ``launch`` package (it would collide with ROS 2's and PyPI's).

The install is non-editable, into a fresh virtual environment that does not see the checkout: pip builds it
from a copy of the checkout's files (fvjax/, launch/, setup.cfg, ...), and the project venv's site-packages
only supplies the dependencies (a path in a .pth file: the editable install's finder there is not
activated). Offline: pip builds with the project venv's setuptools (--no-build-isolation, --no-index).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv

import pytest

from conftest import FAST_COMPILE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
  env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}  # nothing of the checkout
  env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
  return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """(bin folder, site-packages) of a fresh venv with fvjax installed from a wheel built off a copy."""
  tmp = tmp_path_factory.mktemp("installed")
  src = tmp / "src"
  src.mkdir()
  for name in ("setup.cfg", "pyproject.toml", "README.md"):
    shutil.copy(os.path.join(ROOT, name), src)
  for name in ("fvjax", "launch"):  # launch/: the checkout's entry modules, which setup.cfg must leave out
    shutil.copytree(os.path.join(ROOT, name), src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
  venv.EnvBuilder(with_pip=False).create(tmp / "venv")
  bin_dir = tmp / "venv" / "bin"
  python = str(bin_dir / "python")
  site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        capture_output=True, text=True, check=True).stdout.strip()
  with open(os.path.join(site, "fvjax_test_dependencies.pth"), "w") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")  # the project venv's packages, appended after the new venv's
  out = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
                        "--ignore-installed", "--no-cache-dir", str(src)], cwd=tmp, env=_env(), capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, (out.stdout + out.stderr)[-3000:] + (
      "\n(building a wheel offline needs setuptools >= 70.1 in the project venv: pip install -e '.[test]')")
  return bin_dir, site


def _run(installed, cwd, *args):
  bin_dir, _ = installed
  return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=_env(), capture_output=True, text=True,
                        timeout=600)


@pytest.mark.slow
def test_installed_scripts_run_with_shipped_flagfiles_and_no_top_level_launch(installed, tmp_path):
  bin_dir, site = installed
  where = _run(installed, tmp_path, "python", "-c", "import fvjax, importlib.util as u; print(fvjax.__file__); "
               "print(u.find_spec('fvjax.launch.console').origin); print(u.find_spec('launch'))")
  fvjax_file, console_file, launch_spec = where.stdout.split()
  assert fvjax_file.startswith(site) and console_file.startswith(site), where.stdout + where.stderr[-2000:]
  assert launch_spec == "None"  # `import launch` fails: no top-level package of that name is installed
  for name in ("classify", "visualize", "sanity-check", "train-detector", "fooling-circuit", "silent-units",
               "theory", "causal-benchmark"):
    assert (bin_dir / f"fvjax-{name}").is_file(), name

  # The console script's --help: the docstring, the script's own flags, and the shipped flagfiles by name.
  helped = _run(installed, tmp_path, "fvjax-theory", "--help")
  assert helped.stdout.startswith("The theory of paper section 4"), helped.stdout[:500] + helped.stderr[-2000:]
  assert "\n  --grid:" in helped.stdout and "\n  --workdir:" in helped.stdout
  shipped = os.path.join(site, "fvjax", "launch", "flags")
  joined = helped.stdout.replace("\n", " ")
  assert "demo, detector_demo" in joined and shipped in joined, helped.stdout

  # A shipped flagfile by name, from a folder that has none: demo.flags names the sanity check's settings;
  # classify takes its --model (then overridden by a tiny one) and --undefok skips the rest.
  demo = [line.split("=")[0][2:] for line in open(os.path.join(shipped, "demo.flags")) if line.startswith("--")]
  undefok = ",".join(name for name in demo if name != "model")
  run = _run(installed, tmp_path, "python", "-m", "fvjax.launch.classify", "--flagfile=demo.flags",
             f"--undefok={undefok}", "--model=tiny_cnn", "--top=1")
  assert run.returncode == 0, run.stderr[-3000:]
  assert "chelsea:" in run.stdout and "class_" in run.stdout, run.stdout[-2000:]
  assert sorted(os.listdir(tmp_path)) == []  # nothing written where it ran
