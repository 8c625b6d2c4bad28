"""absl entry points, one per experiment: ``python -m launch.<name> --flagfile=...``."""
