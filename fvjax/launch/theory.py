r"""The theory of paper section 4, made executable: witnesses and decoders per function class.

  python -m fvjax.launch.theory --workdir=workdir/theory

Writes metrics.json (the table as rows, plus per-class checks and decoder
error rates, and the Lipschitz sweep), table.md and <class>.png into
--workdir; --figure also writes the combined figure (the README's is
docs/figures/theory/witnesses.png).
"""

from fvjax import launch
from fvjax.experiments import theory

main = launch.experiment_script(__name__, theory, "workdir/theory",
                                "Output folder (created; results are written atomically).")
