"""The flags of a multi-process run (``jax.distributed``), shared by every launch script.

  python -m fvjax.launch.sanity_check --flagfile=tpu.flags --distributed        # on every host of a pod slice
  srun python -m fvjax.launch.sanity_check --flagfile=imagenet.flags --distributed  # SLURM: one task per node
  python -m fvjax.launch.sanity_check ... --distributed --coordinator_address=10.0.0.1:1234 \\
      --num_processes=2 --process_id=0   # and --process_id=1 on the other machine

:func:`initialize` runs before the script's work (:func:`fvjax.launch.run`), so that JAX starts with every device of
every process; where the explicit flags are missing, ``jax.distributed.initialize`` reads them from the cluster
(Cloud TPU, SLURM, Open MPI).
"""

from absl import flags

DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Run as one process of several (one per host, or per GPU): jax.distributed.initialize "
    "with --coordinator_address, --num_processes and --process_id, or what it detects of the cluster (Cloud TPU, "
    "SLURM, Open MPI); the device mesh spans every process, and only process 0 writes files (README: Scaling out).")
COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "With --distributed: host:port of process 0, which all processes connect to "
    "(default: detected from the cluster).")
NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "With --distributed: the number of processes (default: detected from the cluster).",
    lower_bound=1)
PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "With --distributed: this process's index, 0 to --num_processes - 1 (default: detected "
    "from the cluster).", lower_bound=0)

_EXPLICIT = (COORDINATOR_ADDRESS, NUM_PROCESSES, PROCESS_ID)
ACCEPTED = ("accepted: --distributed alone inside a Cloud TPU, SLURM or Open MPI job, or --distributed with "
            "--coordinator_address=HOST:PORT, --num_processes=N and --process_id=I (0 <= I < N)")


def initialize() -> None:
  """Starts ``jax.distributed`` when ``--distributed`` is given (call it before any JAX computation).

  Raises:
    ValueError: explicit flags without ``--distributed``, a process id out of range, or no cluster to detect
      (one sentence naming what is accepted).
  """
  given = [f"--{f.name}" for f in _EXPLICIT if f.value is not None]
  if not DISTRIBUTED.value:
    if given:
      raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only with --distributed; "
                       f"{ACCEPTED}.")
    return
  if NUM_PROCESSES.value is not None and PROCESS_ID.value is not None and PROCESS_ID.value >= NUM_PROCESSES.value:
    raise ValueError(f"--process_id={PROCESS_ID.value} is not below --num_processes={NUM_PROCESSES.value}; "
                     f"{ACCEPTED}.")
  import jax  # pylint: disable=g-import-not-at-top
  try:
    jax.distributed.initialize(COORDINATOR_ADDRESS.value, NUM_PROCESSES.value, PROCESS_ID.value)
  except (ValueError, RuntimeError) as e:  # jax's own: nothing detected, a bad value, no coordinator in time
    missing = [f"--{f.name}" for f in _EXPLICIT if f.value is None]
    reason = (f"no cluster detected to take {', '.join(missing)} from" if "should be defined" in str(e) else
              str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    raise ValueError(f"Cannot start the multi-process run: {reason}; {ACCEPTED}.") from None
