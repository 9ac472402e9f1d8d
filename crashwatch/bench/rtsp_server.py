"""A real RTSP server on loopback for the tests and the benchmarks: GStreamer's RTSP server serving an H.264
MP4 file, or (SOURCE ``test``) GStreamer's live test pattern encoded to H.264, 640x360 at 30 fps.

Run with Debian's /usr/bin/python3 (which sees the `gi` bindings; a venv's Python does not):
    /usr/bin/python3 crashwatch/bench/rtsp_server.py CLIP.mp4|test PORT [USER:PASSWORD]
It serves rtsp://127.0.0.1:PORT/live (to USER:PASSWORD alone, by Basic authentication, where given), prints
"ready" once listening, and ends a file's stream at its end.
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
    if clip == "test":
        factory.set_launch("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 "
                           "! x264enc tune=zerolatency key-int-max=15 ! rtph264pay name=pay0 pt=96 )")
    else:
        factory.set_launch(f"( filesrc location={clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )")
    factory.set_shared(True)
    if len(sys.argv) > 3:
        user, _, password = sys.argv[3].partition(":")
        auth, token = GstRtspServer.RTSPAuth(), GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
