"""A monitor process: one camera or a cameras file on one model (``run``, ``cameras``, ``fleet``), stopped by
signals (``signals``), and Triton's own server for a bundle (``triton``)."""
