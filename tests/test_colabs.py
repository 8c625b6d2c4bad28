"""The notebooks in colabs/ run top to bottom on a CPU in reduced mode.

How the reduced mode is switched on: every notebook has one code cell tagged
``parameters`` (papermill's convention) that sets ``REDUCED = False``; the
settings are derived from ``REDUCED`` in the cell after it. This test does
what ``papermill -p REDUCED True`` does: it inserts a cell ``REDUCED = True``
(tagged ``injected-parameters``) right after the parameters cell, then
executes the notebook with nbclient on the ``python3`` kernel (ipykernel's
kernelspec, whose ``python`` jupyter_client resolves to the interpreter
running pytest: the venv's, where fvjax is installed editable; a last injected
cell checks both), with ``tmp_path`` as working directory (the notebooks write
into ``workdir/..._reduced`` relative to it) and a per-cell timeout. Any cell error fails
the test; each run must also leave its figures and ``metrics.json`` behind,
show a figure inline and print its key metric.

Speed: in reduced mode most of the time is XLA compiling many small
programs, so the kernels run with ``--xla_backend_optimization_level=0``
added to ``XLA_FLAGS`` (less LLVM optimisation of the generated code: the
same programs, compiled faster and run slower, which tiny models do not
notice). On the project's 2-core machine the five notebooks took 103 s one
after another with it and 132 s without; ``pytest -n 2`` runs two at a time.

Needs nbclient, nbformat and ipykernel (the ``test`` extra); skipped without them.
"""

import json
import os
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat (pip install -e '.[test]')")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient (pip install -e '.[test]')")
pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel (pip install -e '.[test]')")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLABS = os.path.join(ROOT, "colabs")
CELL_TIMEOUT_S = 300
FAST_COMPILE = "--xla_backend_optimization_level=0"  # for the kernels: compile fast, run a little slower

# notebook -> (workdir it writes in reduced mode, files it must write there, text its outputs must contain)
EXPECTED = {
    "feature_visualization.ipynb": ("workdir/feature_visualization_reduced",
                                    ("grid.png", "unit_0.png", "top_photos.png", "metrics.json"), "natural max"),
    "fooling_circuit.ipynb": ("workdir/fooling_circuit_reduced",
                              ("comparison.png", "trajectory.png", "metrics.json",
                               "detector_training/detector/detector.json"), "top-1 agreement"),
    "silent_units.ipynb": ("workdir/silent_units_reduced", ("comparison.png", "metrics.json"),
                           "calibration_logits_bit_identical"),
    "sanity_check.ipynb": ("workdir/sanity_check_reduced",
                           ("path_similarity.png", "visualizations.png", "metrics.json"), "normalized"),
    "causal_benchmark.ipynb": ("workdir/causal_benchmark_reduced", ("accuracy.png", "metrics.json", "unit_0.json"),
                               "occlusions per query"),
    "theory.ipynb": ("workdir/theory_reduced", ("table.md", "witnesses.png", "constant.png", "metrics.json"),
                     "measured verdict agrees with the paper"),
}


def _read(name):
  with open(os.path.join(COLABS, name)) as f:
    return nbformat.read(f, as_version=4)


def _parameters_index(nb):
  tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
  return tagged[0]


def _outputs_text(nb):
  parts = []
  for cell in nb.cells:
    for out in cell.get("outputs", []):
      if "text" in out:
        parts.append(out["text"])
      parts.extend(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
  return "\n".join(parts)


def test_every_experiment_has_a_notebook():
  assert sorted(n for n in os.listdir(COLABS) if n.endswith(".ipynb")) == sorted(EXPECTED)


def test_notebooks_are_what_colabs_build_writes(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  subprocess.run([sys.executable, os.path.join(COLABS, "build.py"), str(tmp_path)], check=True, timeout=120)
  for name in EXPECTED:
    with open(os.path.join(COLABS, name)) as a, open(tmp_path / name) as b:
      assert a.read() == b.read(), f"{name} is stale: run python colabs/build.py colabs"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_is_clean_and_colab_ready(name):
  nb = _read(name)
  nbformat.validate(nb)
  assert nb.cells[0].cell_type == "markdown" and "section" in nb.cells[0].source.lower()
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None, "commit notebooks with outputs cleared"
  install = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and "FVJAX_SOURCE" in c.source)
  assert '"google.colab" in sys.modules' in install and "pip" in install
  assert any("jax.devices()" in c.source for c in nb.cells if c.cell_type == "code")
  assert "REDUCED = False" in nb.cells[_parameters_index(nb)].source


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_in_reduced_mode(name, tmp_path, monkeypatch):
  workdir, files, text = EXPECTED[name]
  monkeypatch.setenv("XLA_FLAGS", f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip())
  nb = _read(name)
  injected = nbformat.v4.new_code_cell("REDUCED = True")
  injected.metadata["tags"] = ["injected-parameters"]
  nb.cells.insert(_parameters_index(nb) + 1, injected)
  whoami = "import sys, fvjax\nprint(f'kernel: {sys.executable} fvjax: {fvjax.__file__}')"
  nb.cells.append(nbformat.v4.new_code_cell(whoami))
  start = time.time()
  client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()  # raises CellExecutionError (with the cell's traceback) on any error
  print(f"{name}: {time.time() - start:.1f} s")
  # The kernel is this interpreter (the venv's) and imports fvjax from this checkout.
  expected = f"kernel: {sys.executable} fvjax: {os.path.join(ROOT, 'fvjax', '__init__.py')}"
  assert expected in nb.cells[-1].outputs[0]["text"], nb.cells[-1].outputs
  for f in files:
    assert (tmp_path / workdir / f).is_file(), f"{name} did not write {workdir}/{f}"
  assert text in _outputs_text(nb), f"{name}'s outputs lack {text!r}"
  metrics = json.loads((tmp_path / workdir / "metrics.json").read_text())
  assert metrics, name
  shows = [c for c in nb.cells if c.cell_type == "code" and "display(Image(" in c.source]
  assert shows, f"{name} shows no figure"
  for cell in shows:
    assert any("image/png" in o.get("data", {}) for o in cell.outputs), f"{name}: no figure in\n{cell.source}"
