"""Evaluation by replay: clips and drives replayed through the monitor itself, scored as alerts a driver
would get (``scoring``), swept over thresholds (``curve``), and used to set a bundle's alert threshold
(``calibrate``)."""
