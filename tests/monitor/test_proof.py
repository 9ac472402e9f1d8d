"""Signed evidence, checked by `crashwatch verify` as whoever receives it would: every change to a real
event's files or sidecar is named, and an intact one passes with the device's public key."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from crashwatch.bench.process import free_port
from crashwatch.cli import main
from crashwatch.monitor.evidence.lock import SIDECAR
from crashwatch.review.events import EventClip
from tests.support.media import write_video
from tests.support.shared import REPO


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("cab", "other"):
        made = CliRunner().invoke(main, ["keys", "--signing", "--out", str(folder), "--name", name])
        assert made.exit_code == 0 and f"{name}.sign.pub" in made.output, made.output
    assert (folder / "cab.sign").stat().st_mode & 0o077 == 0, "the private key is readable by others"
    return folder


def _monitor(bundle: Path, tmp_path: Path, *options: str) -> None:
    clip = write_video(tmp_path / "drive.mp4", 60)
    run = subprocess.run([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(bundle), "--source", str(clip),
                          "--camera", "cab", "--pub", f"tcp://127.0.0.1:{free_port()}", "--replay", "fast",
                          "--alert-on", "0", "--alert-off", "0", *options], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr


def verify(path: Path, key: Path | None = None):
    return CliRunner().invoke(main, ["verify", str(path), *(["--key", str(key)] if key else [])])


def test_a_recorded_events_files_chain_and_signature_verify_and_each_change_is_named(tiny_bundle, keys, tmp_path):
    _monitor(tiny_bundle, tmp_path, "--record", str(tmp_path / "rec"), "--record-segment", "1",
             "--sign-key", str(keys / "cab.sign"))
    (event,) = (tmp_path / "rec/events").iterdir()
    sidecar = json.loads((event / SIDECAR).read_text())
    names = [s["name"] for s in sidecar["segments"]]
    assert len(names) >= 3 and all(len(s["sha256"]) == 64 and s["chain"] for s in sidecar["segments"])
    # The alert's explanation came after the sidecar was first signed: added to it and signed again.
    assert [e["state"] for e in sidecar["explanations"]] == ["ready"]
    assert sidecar["explanations"][0]["alert_id"] == sidecar["alert"]["alert_id"]
    good = verify(event, keys / "cab.sign.pub")
    assert good.exit_code == 0 and f"{event}: intact; signed by key" in good.output and "(the key given)" in good.output
    assert "not one you gave" in verify(event).output  # without --key: only the sidecar's own key

    # The dashboard's download: the evidence as recorded (not its browser copy, made first here), which unpacks to
    # an event that verifies.
    served = EventClip.find(event.parent, event.name)
    served.ensure_browser_copy()
    assert verify(event, keys / "cab.sign.pub").exit_code == 0  # the browser copy beside it is not evidence
    with zipfile.ZipFile(io.BytesIO(served.evidence_zip())) as archive:
        assert sorted(archive.namelist()) == sorted(f"{event.name}/{n}" for n in [SIDECAR, *names])
        archive.extractall(tmp_path / "downloaded")
    assert verify(tmp_path / "downloaded" / event.name, keys / "cab.sign.pub").exit_code == 0

    def tampered(change) -> str:
        copy = tmp_path / f"copy{len(list(tmp_path.glob('copy*')))}"
        shutil.copytree(event, copy)
        change(copy)
        result = verify(copy, keys / "cab.sign.pub")
        assert result.exit_code == 1 and "NOT intact" in result.output, result.output
        return result.output

    def flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    def edit(copy: Path, change) -> None:
        document = json.loads((copy / SIDECAR).read_text())
        change(document)
        (copy / SIDECAR).write_text(json.dumps(document))

    assert f"changed: {names[1]}" in tampered(lambda c: flip(c / names[1]))
    assert f"removed: {names[0]}" in tampered(lambda c: (c / names[0]).unlink())
    assert "added: notes.txt" in tampered(lambda c: (c / "notes.txt").write_text("x"))
    assert "signature does not match its content" in tampered(
        lambda c: edit(c, lambda d: d.update(window_start=d["window_start"] + 1)))
    assert "the chain breaks here" in tampered(
        lambda c: edit(c, lambda d: d.update(segments=[d["segments"][1], d["segments"][0], *d["segments"][2:]])))

    def resigned(copy: Path) -> None:  # a forger's own key over a shortened event
        from crashwatch.monitor.evidence.proof import Signer

        document = json.loads((copy / SIDECAR).read_text())
        document["segments"] = document["segments"][:-1]
        (copy / names[-1]).unlink()
        (copy / SIDECAR).write_text(json.dumps(Signer.load(keys / "other.sign").sign(document)))
    assert "not by the key given" in tampered(resigned)


def test_an_event_clip_is_hashed_and_signed_and_unsigned_evidence_is_said_to_be(tiny_bundle, keys, tmp_path):
    _monitor(tiny_bundle, tmp_path, "--events", str(tmp_path / "events"), "--events-hold", "memory", "--sign-key",
             str(keys / "cab.sign"))
    (clip,) = (tmp_path / "events").glob("*.mp4")
    assert [e["state"] for e in json.loads(clip.with_suffix(".json").read_text())["explanations"]] == ["ready"]
    assert verify(clip, keys / "cab.sign.pub").exit_code == 0
    data = bytearray(clip.read_bytes())
    data[-100] ^= 0xFF
    clip.write_bytes(bytes(data))
    assert f"changed: {clip.name}" in verify(clip, keys / "cab.sign.pub").output

    _monitor(tiny_bundle, tmp_path / "plain", "--events", str(tmp_path / "plain/events"), "--events-hold", "memory")
    (plain,) = (tmp_path / "plain/events").glob("*.mp4")
    unsigned = verify(plain)
    assert unsigned.exit_code == 1 and "not signed (the monitor ran without --sign-key)" in unsigned.output


def test_signing_options_and_files_that_cannot_be_used_are_named(tmp_path, keys):
    runner = CliRunner()
    result = runner.invoke(main, ["monitor", "--source", str(write_video(tmp_path / "c.mp4", 5)), "--sign-key",
                                  str(keys / "cab.sign")])
    assert result.exit_code == 2 and "--sign-key signs event evidence: give --events or --record too" in result.output
    result = runner.invoke(main, ["monitor", "--source", str(tmp_path / "c.mp4"), "--events", str(tmp_path / "e"),
                                  "--sign-key", str(keys / "cab.sign.pub")])
    assert result.exit_code == 1 and "cab.sign.pub: not a signing key file" in result.output
    again = runner.invoke(main, ["keys", "--signing", "--out", str(keys), "--name", "cab"])
    assert again.exit_code == 1 and "a signing key named 'cab' exists already" in again.output
    result = runner.invoke(main, ["verify", str(tmp_path)])
    assert result.exit_code == 1 and "not an event folder" in result.output
