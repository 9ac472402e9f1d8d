"""What the monitor keeps on disk: the loop recording (``ring``), an alert's evidence locked out of it
(``lock``), event clips held in memory where there is no recording (``clips``), and crash-safe writes
(``durable``)."""
