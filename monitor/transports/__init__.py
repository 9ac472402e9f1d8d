"""Where the monitor's messages go: a ZeroMQ PUB socket (``zeromq``, with CURVE in ``curve``), MQTT through a
durable outbox (``mqtt``, ``outbox``), and the reading side (``subscribe``)."""
