r"""The theory of paper section 4, made executable: witnesses and decoders per function class.

  python -m fvjax.launch.theory --workdir=workdir/theory

Writes metrics.json (the table as rows, plus per-class checks and decoder
error rates, and the Lipschitz sweep), table.md and <class>.png into
--workdir; --figure also writes the combined figure (the README's is
docs/figures/theory/witnesses.png).
"""

from absl import flags

from fvjax import launch
import jax

from fvjax.theory import report

_WORKDIR = flags.DEFINE_string("workdir", "workdir/theory", "Output folder (created; results are written atomically).")
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed: the same seed gives the same images and results.")
_GRID = flags.DEFINE_integer("grid", 65, "Grid points per axis on [0,1]^d.", lower_bound=3)
_LIPSCHITZ = flags.DEFINE_list("lipschitz", ["1", "2", "4", "8", "16"], "Lipschitz constants to sweep (>= 1).")
# A function with range 1 on [0,1] has no smaller Lipschitz constant than 1.
launch.check_counts(_LIPSCHITZ, lower=1, example="1,2,4", number=float)
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1000, "Sampled functions per class (32 queries each).",
                                    lower_bound=1)
_NUM_TRAINED = flags.DEFINE_integer("num_trained", 32, "Networks trained by ERM for the sampled error rate.",
                                    lower_bound=1)
_ERM_STEPS = flags.DEFINE_integer("erm_steps", 3000, "Adam steps per network of the ERM witness.", lower_bound=1)
_FIGURE = flags.DEFINE_list("figure", [], "Extra paths for the combined figure of all classes.")


def main(argv):
  del argv
  lipschitz = [float(l) for l in _LIPSCHITZ.value]
  metrics = report.run(_WORKDIR.value, key=jax.random.PRNGKey(_SEED.value), grid_size=_GRID.value,
                       lipschitz=lipschitz, num_samples=_NUM_SAMPLES.value, num_trained=_NUM_TRAINED.value,
                       erm_steps=_ERM_STEPS.value, figure_paths=_FIGURE.value)
  print(report.markdown_table(metrics["rows"]), end="")
  print(f"wrote {_WORKDIR.value}")


if __name__ == "__main__":
  launch.run(main)
