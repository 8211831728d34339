#!/usr/bin/env python3
"""An independent WHIP publisher: GStreamer's webrtcbin (libnice ICE, its own DTLS/SRTP,
x264 + Opus), so the engine is tested against a stack that is not str0m.

Usage: whip_publish.py WHIP_URL SECONDS

GStreamer 1.22 (Debian 12) makes RSA DTLS certificates, which str0m's pure-Rust DTLS
(dimpl: ECDSA only, like every browser) refuses; so the script gives webrtcbin's DTLS
elements an ECDSA P-256 certificate made with the openssl CLI before they start.

Makes a non-trickle offer (waits for ICE gathering to finish), POSTs it as
application/sdp, applies the 201's answer, streams for SECONDS, then DELETEs the
session at its Location. Exits non-zero on any failure.
"""
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

PIPELINE = """
webrtcbin name=w bundle-policy=max-bundle
videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1
  ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=400
  ! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 aggregate-mode=zero-latency
  ! application/x-rtp,media=video,encoding-name=H264,payload=102 ! w.
audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc frame-size=20
  ! rtpopuspay ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! w.
"""


def ecdsa_pem():
    """A self-signed ECDSA P-256 certificate and its key, in one PEM string."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{d}/k.pem", "-out", f"{d}/c.pem", "-days", "2", "-subj", "/CN=whip-test"],
            check=True, capture_output=True)
        fp = subprocess.run(["openssl", "x509", "-in", f"{d}/c.pem", "-noout", "-fingerprint", "-sha256"],
                            check=True, capture_output=True, text=True).stdout.strip().split("=", 1)[1]
        return open(f"{d}/c.pem").read() + open(f"{d}/k.pem").read(), fp


def main():
    url, seconds = sys.argv[1], float(sys.argv[2])
    Gst.init(None)
    pipe = Gst.parse_launch(PIPELINE)
    w = pipe.get_by_name("w")
    pem, fingerprint = ecdsa_pem()

    def on_element(_bin, _sub, element):
        factory = element.get_factory()
        if factory is not None and factory.get_name() == "dtlssrtpdec":
            element.set_property("pem", pem)

    w.connect("deep-element-added", on_element)
    loop = GLib.MainLoop()
    state = {"location": None, "error": None}

    def fail(msg):
        state["error"] = msg
        loop.quit()

    def post_offer():
        offer = w.get_property("local-description").sdp.as_text()
        # webrtcbin took its fingerprint from the certificate it generated first.
        offer = "\r\n".join(
            f"a=fingerprint:sha-256 {fingerprint}" if line.startswith("a=fingerprint:") else line
            for line in offer.split("\r\n"))
        req = urllib.request.Request(url, data=offer.encode(), method="POST", headers={"Content-Type": "application/sdp"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                if resp.status != 201:
                    return fail(f"WHIP answered {resp.status}")
                state["location"] = urllib.parse.urljoin(url, resp.headers["Location"])
                answer_sdp = resp.read().decode()
        except Exception as e:  # noqa: BLE001 - any failure ends the test run
            return fail(f"WHIP POST failed: {e}")
        _, sdp = GstSdp.SDPMessage.new_from_text(answer_sdp)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        w.emit("set-remote-description", answer, None)
        GLib.timeout_add(int(seconds * 1000), loop.quit)
        return False

    def on_gathering(*_):
        if w.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(post_offer)

    def on_offer(promise, _):
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            return fail(f"create-offer failed: {reply.to_string() if reply is not None else None}")
        w.emit("set-local-description", offer, None)

    def on_negotiation_needed(_):
        # Publish only: make every transceiver send-only before the offer.
        i = 0
        while True:
            t = w.emit("get-transceiver", i)
            if t is None:
                break
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
            i += 1
        w.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))

    def on_bus(_, msg):
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            fail(f"GStreamer error: {err.message} ({dbg})")

    w.connect("on-negotiation-needed", on_negotiation_needed)
    w.connect("notify::ice-gathering-state", on_gathering)
    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_bus)
    GLib.timeout_add(int(seconds * 1000) + 15000, lambda: fail("timed out") or False)
    pipe.set_state(Gst.State.PLAYING)
    loop.run()
    if state["location"]:
        try:
            urllib.request.urlopen(urllib.request.Request(state["location"], method="DELETE"), timeout=5)
        except Exception:  # noqa: BLE001 - the session may already be gone
            pass
    pipe.set_state(Gst.State.NULL)
    if state["error"]:
        print(state["error"], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
