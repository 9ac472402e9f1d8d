"""The example configurations, shipped in the package as ``crashwatch.configs``: every ``--config`` takes one by
its name (``--config tiny``, ``--config cameras.example``) as well as a path (``crashwatch.contract.config``)."""
