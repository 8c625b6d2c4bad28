"""``python -m launch.<name> --flagfile=launch/flags/X.flags`` in a checkout: thin entry modules.

The scripts live in :mod:`fvjax.launch` (installed: ``fvjax-<name>``, ``python -m fvjax.launch.<name>``);
``launch/flags`` links to the flagfiles shipped in ``fvjax/launch/flags``. Not installed by pip.
"""
