"""``crashwatch bench``: what a stride costs, measured side by side in one run, written to docs/benchmarks.md.

One module per kind of measurement (``strides``, ``baselines``, ``floor``, ``process``), the report they fill
(``report``), the run that orders them (``run``), and the long soak (``soak``, ``crashwatch bench --soak``).
"""
