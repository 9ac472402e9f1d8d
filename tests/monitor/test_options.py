"""The monitor's options are declared once (``MonitorOptions``' and ``ServeOptions``' settings): the command line
and a cameras file offer every one of them, and a value is checked by the same parser, with the same reason, from
either."""

from __future__ import annotations

import dataclasses
import logging
import re

import pytest
import yaml
from click.testing import CliRunner

from crashwatch.bench.process import free_port
from crashwatch.cli import main
from crashwatch.contract.config import ConfigError
from crashwatch.monitor.pipeline.options import SETTING, SETTINGS, MonitorOptions
from crashwatch.monitor.serving.cameras import load_cameras
from crashwatch.monitor.serving.options import SERVE_SETTINGS, ServeOptions
from tests.support.media import write_video

# A value for every setting, none of them its default (but events_hold, which goes without record: below).
CHANGED = {"source": None, "name": "yard", "stride": 1.5, "replay": "fast", "loop": True, "preview": True,
           "events": "ev", "record": "rec", "record_keep": "2GB,1h", "record_codec": "mp4v", "record_segment": 4.0,
           "record_min_free": "64MB", "record_bitrate": "4.5M",
           "alert.on": 0.7, "alert.off": 0.4, "alert.min_on_seconds": 0.5, "alert.min_off_seconds": 2.0,
           "caution.on": 0.5, "caution.off": 0.3, "caution.rise_seconds": 0.5,
           "window_seconds": 3.0, "degraded_alerts": "hold", "explain.when": "off",
           "explain.mask": ["0,0.9,1,0.9,1,1,0,1", "0.8,0,1,0,1,0.1"]}


def _entry(values: dict) -> dict:
    entry: dict = {}
    for key, value in values.items():
        outer, _, inner = key.partition(".")
        if inner:
            entry.setdefault(outer, {})[inner] = value
        else:
            entry[key] = value
    return entry


def _cameras_file(tmp_path, entry: dict, top: dict | None = None):
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump({**(top or {}), "cameras": [entry]}), encoding="utf-8")
    return path


def test_every_setting_is_an_option_of_the_command_line_with_its_help():
    params = {p.name: p for p in main.commands["monitor"].params}
    for setting in (*SETTINGS, *(s for s in SERVE_SETTINGS if s.flag)):
        assert setting.name in params, setting.flag
        assert params[setting.name].opts == [setting.flag]
        assert params[setting.name].help == setting.help


def test_a_cameras_file_sets_every_setting(tmp_path):
    assert set(CHANGED) | {"events_hold"} == {s.key for s in SETTINGS}
    clip = write_video(tmp_path / "yard.mp4", 10)
    path = _cameras_file(tmp_path, _entry({**CHANGED, "source": str(clip)}))
    (options,) = load_cameras(path).options()
    defaults = MonitorOptions(source=options.source)
    for setting in SETTINGS:
        assert getattr(options, setting.name) != getattr(defaults, setting.name) or \
            setting.name in ("source", "events_hold"), setting.key
    assert options.record_keep.max_bytes == 2 * 10**9 and options.record_keep.max_age_s == 3600
    assert options.alert_overrides() == {"off": 0.4, "min_on_seconds": 0.5, "min_off_seconds": 2.0}
    assert options.explain_mask.to_json() == [[0.0, 0.9, 1.0, 0.9, 1.0, 1.0, 0.0, 1.0], [0.8, 0.0, 1.0, 0.0, 1.0, 0.1]]
    (held,) = load_cameras(_cameras_file(tmp_path, _entry({"name": "a", "source": str(clip), "events": "ev",
                                                           "events_hold": "memory"}))).options()
    assert held.events_hold == "memory" != defaults.events_hold


@pytest.mark.parametrize("key,flag,value,reason", [
    ("stride", "--stride", -1, "must be a number above 0 and at most 60"),
    ("alert.on", "--alert-on", 1.5, "must be a number from 0 to 1"),
    ("record_segment", "--record-segment", 0.1, "must be a number from 0.2 to 60"),
    ("record_keep", "--record-keep", "lots", "give a size (500MB, 2GB), an age (30min, 24h, 7d) or both"),
    ("record_min_free", "--record-min-free", "plenty", "give a size such as 500MB, 2GB or 64KiB"),
    ("record_bitrate", "--record-bitrate", "fast", "give bits per second from 50k to 100M"),
    ("caution.on", "--caution-on", 2, "must be a number from 0 to 1"),
    ("name", "--camera", "front/left", "letters, digits, ., - and _"),
    ("explain.mask", "--explain-mask", "0,0,1,1", "a polygon needs at least three x,y points"),
])
def test_a_bad_value_gets_the_same_reason_from_the_command_line_and_a_cameras_file(tmp_path, key, flag, value,
                                                                                     reason):
    clip = write_video(tmp_path / "c.mp4", 10)
    result = CliRunner().invoke(main, ["monitor", "--source", str(clip), flag, str(value)])
    assert result.exit_code == 2 and f"Invalid value for '{flag}'" in result.output and reason in result.output
    entry = _entry({"name": "a", "source": str(clip), key: value})
    with pytest.raises(ConfigError, match=rf"cameras\[0\]\.{key}: .*{re.escape(reason[:20])}"):
        load_cameras(_cameras_file(tmp_path, entry))


def test_a_cameras_file_sets_every_process_setting_at_its_top(tmp_path):
    clip = write_video(tmp_path / "c.mp4", 10)
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "pw").write_text("x")
    (tmp_path / "cab.sign").write_text("x")
    top = {"bundle": str(tmp_path / "b"), "pub": "tcp://127.0.0.1:5601", "runtime": "openvino", "threads": 2,
           "text_weights": "prepacked",
           "metrics": "127.0.0.1:9108", "sign_key": str(tmp_path / "cab.sign"),
           "mqtt.url": "mqtt://broker", "mqtt.ca": str(tmp_path / "ca.pem"), "mqtt.password_file": str(tmp_path / "pw"),
           "mqtt.prefix": "fleet", "mqtt.risk": True, "mqtt.outbox_dir": str(tmp_path / "ob"),
           "mqtt.discovery": "ha"}
    assert set(top) | {"model", "model_timeout"} == {s.key for s in SERVE_SETTINGS if s.key}
    data = {**_entry(top), "cameras": [{"name": "a", "source": str(clip)}]}
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    serve = load_cameras(path).serve
    defaults = ServeOptions()
    for setting in SERVE_SETTINGS:
        if setting.key in top:
            assert getattr(serve, setting.name) != getattr(defaults, setting.name), setting.key
    assert serve.outbox_for("a") == tmp_path / "ob" / "outbox-a.sqlite"
    path.write_text(yaml.safe_dump({**data, "model": "triton://h:1/m"}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"model: .* instead of `bundle` \(not both\)"):
        load_cameras(path)


@pytest.mark.parametrize("key,flag,value,reason", [
    ("threads", "--threads", 0, "must be a whole number from 1 to 256"),
    ("pub", "--pub", "tcp://127.0.0.1:99999", "port '99999' is not a number from 1 to 65535"),
    ("runtime", "--runtime", "tensorrt", "tensorrt"),
])
def test_a_bad_process_value_is_refused_from_the_command_line_and_a_cameras_file(tmp_path, key, flag, value, reason):
    clip = write_video(tmp_path / "c.mp4", 10)
    result = CliRunner().invoke(main, ["monitor", "--source", str(clip), flag, str(value)])
    assert result.exit_code == 2 and f"Invalid value for '{flag}'" in result.output and reason in result.output
    with pytest.raises(ConfigError, match=rf": {key}: .*{re.escape(reason)}"):
        load_cameras(_cameras_file(tmp_path, {"name": "a", "source": str(clip)}, {key: value}))


@pytest.mark.parametrize("key,value", [("loop", "no"), ("loop", "maybe"), ("preview", 1), ("mqtt.risk", "no")])
def test_a_boolean_in_a_cameras_file_is_true_or_false(tmp_path, key, value):
    clip = write_video(tmp_path / "c.mp4", 10)
    camera, top = ({key: value}, {}) if "." not in key else ({}, _entry({"mqtt.url": "mqtt://h", key: value}))
    where = re.escape(key if "." in key else f"cameras[0].{key}")
    with pytest.raises(ConfigError, match=rf"{where}: must be true or false"):
        load_cameras(_cameras_file(tmp_path, {"name": "a", "source": str(clip), **camera}, top))


def test_rules_between_settings_name_the_setting_at_fault(tmp_path):
    clip = write_video(tmp_path / "c.mp4", 10)
    result = CliRunner().invoke(main, ["monitor", "--source", str(clip), "--alert-on", "0.3", "--alert-off", "0.5"])
    assert result.exit_code == 2 and "--alert-off: 0.5 is above the alert's start (0.3)" in result.output
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.alert\.off: 0.5 is above the alert's start"):
        load_cameras(_cameras_file(tmp_path, {"name": "a", "source": str(clip), "alert": {"on": 0.3, "off": 0.5}}))


def test_options_given_beside_a_cameras_file_are_refused(tmp_path):
    clip = write_video(tmp_path / "c.mp4", 10)
    path = _cameras_file(tmp_path, {"name": "a", "source": str(clip)})
    result = CliRunner().invoke(main, ["monitor", "--config", str(path), "--record-segment", "3"])
    assert result.exit_code == 2 and "--record-segment: set in the cameras file with --config" in result.output


def test_the_library_takes_the_options_as_fields():
    assert [f.name for f in dataclasses.fields(MonitorOptions)][:len(SETTINGS)] == [s.name for s in SETTINGS]


@pytest.mark.parametrize("args,key,entry,reason", [
    (["--record-keep", "2GB"], "record_keep", {"record_keep": "2GB"}, "is for the loop recording, which --record"),
    (["--record-codec", "mp4v"], "record_codec", {"record_codec": "mp4v"}, "is for the loop recording"),
    (["--record-segment", "5"], "record_segment", {"record_segment": 5}, "is for the loop recording"),
    (["--record-bitrate", "1M"], "record_bitrate", {"record_bitrate": "1M"}, "is for the loop recording"),
    (["--loop"], "loop", {"loop": True}, "is for files; a live source runs until it stops"),
])
def test_an_option_that_would_do_nothing_is_refused(tmp_path, args, key, entry, reason):
    clip = str(write_video(tmp_path / "c.mp4", 10))
    source = "rtsp://127.0.0.1:9/none" if key == "loop" else clip
    result = CliRunner().invoke(main, ["monitor", "--source", source, *args])
    assert result.exit_code == 2 and reason in result.output, result.output
    with pytest.raises(ConfigError, match=rf"cameras\[0\]\.{key}: {re.escape(reason)}"):
        load_cameras(_cameras_file(tmp_path, {"name": "a", "source": source, **entry}))


def test_an_option_a_cameras_file_has_no_key_for_is_refused_beside_it_as_such(tmp_path):
    clip = write_video(tmp_path / "c.mp4", 10)
    path = _cameras_file(tmp_path, {"name": "a", "source": str(clip)})
    result = CliRunner().invoke(main, ["monitor", "--config", str(path), "--mqtt-outbox", str(tmp_path / "o.sqlite")])
    assert result.exit_code == 2 and "--mqtt-outbox: not with --config (a cameras file has no such key)" in result.output
    assert "set in the cameras file" not in result.output


def test_a_camera_s_warnings_name_the_camera(tiny_bundle, tmp_path, caplog):
    from crashwatch.monitor.engines.model import RiskModel
    from crashwatch.monitor.messages import CollectingOutlet
    from crashwatch.monitor.pipeline.camera import Monitor

    clip = write_video(tmp_path / "c.mp4", 10)
    options = MonitorOptions(source=SETTING["source"].parse(str(clip)), camera="yard", stride=0.37)
    with caplog.at_level(logging.WARNING):
        Monitor(RiskModel.open(tiny_bundle), options, lambda status: CollectingOutlet())
    assert any(r.getMessage().startswith("camera yard: stride 0.370 s is not a multiple") for r in caplog.records)


def test_a_window_or_stride_that_would_skip_nearly_every_stride_is_refused(tiny_bundle, tmp_path):
    clip = str(write_video(tmp_path / "c.mp4", 10))
    for args, flag in ((["--stride", "0.01"], "--stride"), (["--window-seconds", "0.05"], "--window-seconds")):
        result = CliRunner().invoke(main, ["monitor", "--bundle", str(tiny_bundle), "--source", clip,
                                           "--pub", f"tcp://127.0.0.1:{free_port()}", *args])
        assert result.exit_code == 2 and f"{flag}: a stride of" in result.output, result.output
        assert "risk queries a second; give at least 0.05 s" in result.output
