"""``crashwatch dashboard``: the monitors' cameras, risk and alerts live in a browser, from their ZeroMQ
messages (it is only a subscriber), with each alert's clip playable from the events folder. The page is plain
HTML, CSS and JavaScript in ``static/``, shipped in the package: no CDN, no build step."""
