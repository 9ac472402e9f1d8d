"""One camera's loop: capture -> frame buffer -> prefetched vision passes -> a scored window every stride ->
alerts. ``camera.Monitor`` ties the parts together; it reaches evidence and transports only through their
interfaces."""
