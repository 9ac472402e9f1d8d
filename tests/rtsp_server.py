"""A real RTSP server on loopback for tests: GStreamer's RTSP server serving an H.264 MP4 file.

Run with Debian's /usr/bin/python3 (which sees the `gi` bindings; a venv's Python does not):
    /usr/bin/python3 tests/rtsp_server.py CLIP.mp4 PORT
It serves rtsp://127.0.0.1:PORT/live, prints "ready" once listening, and ends the stream at the end of the file.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    clip, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( filesrc location={clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )")
    factory.set_shared(True)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
