r"""The sanity check and the causal benchmark per feature-visualization method, side by side.

Runs (or resumes: the workdirs' stores keep finished work) the launch scripts once per method on the
embedded default, then writes ``docs/figures/methods_path_similarity.png`` (the normalized path similarity by
depth, one line per method) and prints the README's table (each method's mean normalized path similarity over
the first two thirds and the last third of the layers, the causal benchmark's accuracy of the synthetic
references, and the run times). The README's figure and table come from

  .venv/bin/python scripts/compare_methods.py --methods=lucid,maco,pixel,accentuation --extra=--crops=1

(``--extra`` flags go to every non-Lucid run; ``--skip_causal`` leaves the causal benchmark out; the causal
benchmark runs ``causal_demo.flags`` with ``--conditions=synthetic`` by default, the condition the method
changes.)
"""

import argparse
import json
import os
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")

from fvjax import plots  # pylint: disable=g-import-not-at-top

FIGURE = os.path.join("docs", "figures", "methods_path_similarity.png")


def _run(script: str, flagfile: str, method: str, workdir: str, extra: list[str],
         always: list[str] = ()) -> tuple[dict, float]:
  """Runs ``launch.<script>`` with one method into ``workdir``; returns its metrics and the seconds it took.
  ``extra`` flags go to non-Lucid runs, ``always`` to every run."""
  args = [sys.executable, "-m", f"launch.{script}", f"--flagfile={flagfile}", f"--method={method}",
          f"--workdir={workdir}", *(extra if method != "lucid" else []), *always]
  start = time.time()
  subprocess.run(args, check=True)
  with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
    return json.load(f), time.time() - start


def _mean(metrics: dict, layers: list[str]) -> float:
  return sum(metrics["per_layer"][l]["normalized"] for l in layers) / len(layers)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--methods", default="lucid,maco,pixel,accentuation")
  parser.add_argument("--extra", action="append", default=[], help="a flag for every non-Lucid run")
  parser.add_argument("--skip_causal", action="store_true")
  parser.add_argument("--causal_conditions", default="synthetic",
                      help="the causal benchmark's conditions; synthetic is the one the method changes (mixed "
                           "too, through its 4 synthetic references; the others show only natural images)")
  parser.add_argument("--root", default=os.path.join("workdir", "methods"))
  args = parser.parse_args()
  sanity, causal = {}, {}
  for method in args.methods.split(","):
    sanity[method] = _run("sanity_check", "launch/flags/demo.flags", method,
                          os.path.join(args.root, method), args.extra)
    if not args.skip_causal:
      causal[method] = _run("causal_benchmark", "launch/flags/causal_demo.flags", method,
                            os.path.join(args.root, f"causal_{method}"),
                            args.extra, always=[f"--conditions={args.causal_conditions}"])
  plots.save_figure(plots.path_similarity_by_method({m: r[0] for m, r in sanity.items()}), FIGURE)
  layers = next(iter(sanity.values()))[0]["layers"]
  early, late = layers[:2 * len(layers) // 3], layers[2 * len(layers) // 3:]
  print("| method | path similarity, first 2/3 of layers | last 1/3 | logits | sanity check s | "
        "causal accuracy (synthetic) [95% CI] | causal s |")
  print("|---|---|---|---|---|---|---|")
  for method, (m, seconds) in sanity.items():
    row = f"| {method} | {_mean(m, early):.2f} | {_mean(m, late):.2f} | {m['per_layer']['logits']['normalized']:.2f} "
    row += f"| {seconds:.0f} |"
    if method in causal:
      c, causal_seconds = causal[method]
      syn = c["conditions"]["synthetic"]
      lo, hi = syn["accuracy_ci95"]
      row += f" {syn['accuracy']:.2f} [{lo:.2f}, {hi:.2f}] | {causal_seconds:.0f} |"
    else:
      row += " | |"
    print(row)
  print(f"figure: {FIGURE}")


if __name__ == "__main__":
  main()
