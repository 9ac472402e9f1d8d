"""A bundle on Triton with real parts: Triton's own server (``crashwatch serve-triton``, from the nvidia-pytriton
wheel) on loopback, the monitor's gRPC client, the repository ``export-triton`` writes parsed as Triton's own
``ModelConfig``. The onnxruntime backend and GPU instances need NVIDIA's container and are not run here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from crashwatch.bench.process import free_port
from crashwatch.contract.bundle import Manifest
from crashwatch.demo import DEMO_BUNDLE
from crashwatch.monitor.engines.local import EngineError
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.messages import Message
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.source import parse_source
from crashwatch.monitor.transports.subscribe import describe
from crashwatch.monitor.transports.zeromq import Publisher
from tests.support.collector import Collector
from tests.support.imports import forbid
from tests.support.media import write_video
from tests.support.shared import REPO
from tests.support.timing import within
from tests.support.triton_server import ServedBundle, need_triton

NAME = "cw"
QUEUE_DELAY_US = 20000  # long enough that requests of two clients sent together always meet in the batcher


def _crashwatch(*args: str, timeout: float = 120, prelude: str = "") -> subprocess.CompletedProcess:
    code = prelude + "import sys; from crashwatch.cli import main; sys.argv = ['crashwatch', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _monitor(model: RiskModel, source: str, **options) -> Monitor:
    return Monitor(model, MonitorOptions(source=parse_source(source), **options),
                   lambda status: Publisher(f"tcp://127.0.0.1:{free_port()}", "cam0", status=status))


@pytest.fixture(scope="module")
def served(tiny_bundle, tmp_path_factory):
    """The tiny fp32 bundle served by serve-triton, with a queue delay that makes batching certain."""
    need_triton()
    server = ServedBundle(tiny_bundle, free_port(), tmp_path_factory.mktemp("served"), NAME,
                          ("--queue-delay-us", str(QUEUE_DELAY_US))).start()
    yield server
    server.close()


def _config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_export_triton_writes_configs_triton_parses(tiny_bundle, tmp_path):
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (the triton extra)")
    fp32, int8 = tmp_path / "fp32", tmp_path / "int8"
    result = _crashwatch("export-triton", "--bundle", str(tiny_bundle), "--out", str(fp32), "--name", NAME,
                         "--max-batch", "4", "--queue-delay-us", "1500", "--instances", "2", "--gpu")
    assert result.returncode == 0, result.stderr
    assert "dynamic batching up to 4" in result.stdout
    result = _crashwatch("export-triton", "--bundle", str(DEMO_BUNDLE), "--out", str(int8), "--name", "demo")
    assert result.returncode == 0 and "no dynamic batching" in result.stdout, result.stderr

    m = Manifest.read(tiny_bundle)
    size, tokens, width = m.pixels.image_size, m.tokens_per_frame, m.hidden_size
    vision, head, bundle = (_config(fp32 / f"{NAME}_{part}" / "config.pbtxt") for part in ("vision", "head", "bundle"))
    for config in (vision, head):
        assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 4
        assert config.dynamic_batching.max_queue_delay_microseconds == 1500
        assert [(g.kind, g.count) for g in config.instance_group] == [(config.instance_group[0].KIND_GPU, 2)]
    assert vision.default_model_filename == "vision.onnx" and head.default_model_filename == "head.onnx"
    # The batch dimension is implicit: frames and windows are left out of dims.
    assert [(t.name, list(t.dims)) for t in vision.input] == [("pixel_values", [3, size, size])]
    assert [(t.name, list(t.dims)) for t in vision.output] == [("frame_embeds", [tokens, width])]
    assert [(t.name, list(t.dims)) for t in head.input] == [("inputs_embeds", [-1, width]), ("attention_mask", [-1])]
    logits = head.output[0]
    assert logits.name == "logits" and list(logits.dims) == [1] and list(logits.reshape.shape) == []
    assert bundle.backend == "python" and bundle.max_batch_size == 0 and not bundle.input
    assert [o.name for o in bundle.output] == ["manifest", "prompt_ids", "token_ids", "token_embeddings"]
    for part, files in (("vision", ["vision.onnx"]), ("head", ["head.onnx"]),
                        ("bundle", ["manifest.json", "model.py", "prompt_ids.npy", "token_embeddings.npy",
                                    "token_ids.npy"])):
        folder = fp32 / f"{NAME}_{part}" / "1"
        assert sorted(p.name for p in folder.iterdir()) == files
        for file in files:
            if file in m.files:  # copies of the bundle's own files
                assert hashlib.sha256((folder / file).read_bytes()).hexdigest() == m.files[file]["sha256"]

    for part in ("vision", "head"):  # int8: no dynamic batching, and the config says why
        text = (int8 / f"demo_{part}" / "config.pbtxt").read_text()
        config = _config(int8 / f"demo_{part}" / "config.pbtxt")
        assert not config.HasField("dynamic_batching") and "quantized dynamically" in text
        assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU

    again = _crashwatch("export-triton", "--bundle", str(tiny_bundle), "--out", str(fp32))
    assert again.returncode == 1 and f"{fp32}: already exists" in again.stderr
    assert _crashwatch("export-triton", "--bundle", str(tiny_bundle), "--out", str(fp32), "--force").returncode == 0
    bad = _crashwatch("export-triton", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "x"), "--name", "a/b")
    assert bad.returncode == 1 and "--name 'a/b'" in bad.stderr and not (tmp_path / "x").exists()


def test_a_camera_through_triton_gets_the_local_bundles_probabilities(served, tiny_bundle, tmp_path):
    clip = str(write_video(tmp_path / "c.mp4", 150, fps=10))
    local = _monitor(RiskModel.open(tiny_bundle), clip, replay="fast")
    local.run()
    remote_model = RiskModel.from_triton(served.url, timeout=10)
    remote = _monitor(remote_model, clip, replay="fast")
    summary = remote.run()

    assert summary["strides_skipped"] == 0 and len(remote.risks) == len(local.risks) > 10
    assert [r.frame_ids for r in remote.risks] == [r.frame_ids for r in local.risks]
    difference = max(abs(a.probability - b.probability) for a, b in zip(remote.risks, local.risks))
    assert difference <= 1e-5, difference
    identity = remote.status().model
    assert identity["runtime"] == "triton" and identity["name"] == NAME
    assert identity["hash"] == local.status().model["hash"] and identity["device"].startswith("KIND_CPU at 127.0.0.1")
    assert remote.status().model_calls["state"] == "ok" and remote.status().model_calls["failures"] == 0

    # And through the command: `monitor --model` instead of --bundle.
    result = _crashwatch("monitor", "--model", served.url, "--source", clip, "--replay", "fast",
                         "--pub", f"tcp://127.0.0.1:{free_port()}")
    assert result.returncode == 0, result.stderr
    assert f"stopped: {len(local.risks)} strides (0 skipped)" in result.stdout


def test_two_clients_requests_are_batched_together_by_the_server(served, tiny_bundle):
    import tritonclient.grpc as grpcclient

    local = RiskModel.open(tiny_bundle)
    clients = [RiskModel.from_triton(served.url, timeout=10) for _ in range(2)]
    stats = grpcclient.InferenceServerClient(f"127.0.0.1:{served.port}")

    def counts() -> tuple[int, int]:
        model = stats.get_inference_statistics(f"{NAME}_vision", as_json=True)["model_stats"][0]
        return int(model.get("inference_count", 0)), int(model.get("execution_count", 0))

    size = local.manifest.pixels.image_size
    frames = np.random.default_rng(0).uniform(-1, 1, (2, 10, 1, 3, size, size)).astype(np.float32)
    results = [[None] * 10 for _ in clients]
    start = threading.Barrier(2)

    def camera(i: int) -> None:
        for k in range(10):
            start.wait()  # both cameras' k-th frames are sent together
            results[i][k] = clients[i].encode_frames(frames[i, k])

    before = counts()
    threads = [threading.Thread(target=camera, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    deadline = time.monotonic() + 5  # Triton counts a batch just after its responses are sent
    while (inferences := counts()[0] - before[0]) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    executions = counts()[1] - before[1]
    stats.close()
    assert inferences == 20 and executions < inferences, (inferences, executions)
    # fp32: each camera's embeddings are what its frame alone gives, batched or not.
    for i in range(2):
        for k in range(10):
            assert np.abs(results[i][k] - local.encode_frames(frames[i, k])).max() <= 1e-5


def test_a_stalled_then_killed_server_is_reported_and_the_monitor_resumes(tiny_bundle, tmp_path):
    need_triton()
    server = ServedBundle(tiny_bundle, free_port(), tmp_path / "server", NAME).start()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint)
    clip = str(write_video(tmp_path / "long.mp4", 600, fps=10))
    monitor = Monitor(RiskModel.from_triton(server.url, timeout=1.0), MonitorOptions(source=parse_source(clip)),
                      lambda status: Publisher(endpoint, "cam0", status=status))
    runner = threading.Thread(target=monitor.run, daemon=True)

    def failing(c: Collector) -> dict | None:
        calls = [s["model_calls"] for s in c.of("status") if s["model_calls"]["state"] == "failing"]
        return calls[-1] if calls else None

    def risks_after(count: int):
        return lambda c: len(c.of("risk")) >= count

    try:
        runner.start()
        assert collector.wait_for(risks_after(3), 30), "no risk through Triton"
        # Stalled: calls run into their deadline.
        pids = server.server_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        assert collector.wait_for(failing, 10), "a stalled server was not reported in status"
        stalled = failing(collector)
        assert "DEADLINE_EXCEEDED" in stalled["last_error"] and f"/{NAME}_" in stalled["source"]
        time.sleep(2)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        seen = len(collector.of("risk"))
        assert collector.wait_for(risks_after(seen + 3), 20), "no risk after the stalled server went on"

        # Killed, then started again on the same port.
        server.kill()
        collector.messages.clear()
        assert collector.wait_for(failing, 10), "a killed server was not reported in status"
        down = failing(collector)
        assert down["source"].startswith(f"triton://127.0.0.1:{server.port}/{NAME}_") and down["last_error"]
        wire = next(s for s in reversed(collector.of("status")) if s["model_calls"]["state"] == "failing")
        assert "MODEL CALLS FAILING" in describe(Message.decode(b"status", json.dumps(wire).encode()))
        assert runner.is_alive()
        time.sleep(2)
        collector.messages.clear()
        server.start()
        assert collector.wait_for(risks_after(3), 30), "the monitor did not resume when the server came back"
        assert collector.wait_for(lambda c: c.of("status") and c.of("status")[-1]["model_calls"]["state"] == "ok", 5)
    finally:
        monitor.stop.set()
        runner.join(timeout=10)
        collector.stop()
        server.close()
    status = monitor.status()
    assert status.strides_skipped > 0 and status.model_calls["failures"] > 0
    reasons = [r.stride_reason for r in monitor.risks if r.stride_reason]
    assert any("model calls failed" in reason for reason in reasons), reasons


def test_serve_triton_on_an_int8_bundle_batches_no_requests_and_ctrl_c_stops_it(tmp_path):
    need_triton()
    import tritonclient.grpc as grpcclient

    server = ServedBundle(DEMO_BUNDLE, free_port(), tmp_path, "demo").start()
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.port}")
        for part in ("vision", "head"):
            assert "dynamic_batching" not in client.get_model_config(f"demo_{part}", as_json=True)["config"]
        client.close()
        remote, local = RiskModel.from_triton(server.url, timeout=10), RiskModel.open(DEMO_BUNDLE)
        frames = np.random.default_rng(1).uniform(-1, 1, (5, 3, 128, 128)).astype(np.float32)
        assert np.array_equal(remote.encode_frames(frames[:1]), local.encode_frames(frames[:1]))
        embeds = local.encode_frames(frames)
        assert remote.window_logit(embeds) == pytest.approx(local.window_logit(embeds), abs=1e-6)
        pid = server.process.pid
        assert server.interrupt() == 0
    finally:
        server.close()
    assert not server.server_pids()
    assert "stopped" in server.log_text()
    assert not list(server.tmp.glob("crashwatch-triton-*")), "serve-triton left its working folder"
    assert not list(Path("/dev/shm").glob(f"crashwatch_triton_{pid}_*")), "serve-triton left shared memory"


@pytest.mark.timed
def test_a_server_that_is_not_there_at_the_start_is_one_clear_line(served, tmp_path):
    clip = str(write_video(tmp_path / "c.mp4", 20))
    url = f"triton://127.0.0.1:{free_port()}/{NAME}"
    result = _crashwatch("monitor", "--model", url, "--source", clip)
    assert result.returncode == 1 and f"{url}: no answer from a Triton server" in result.stderr
    assert "Traceback" not in result.stderr

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"triton://127.0.0.1:{silent.getsockname()[1]}/{NAME}"
        started = time.monotonic()
        result = _crashwatch("monitor", "--model", url, "--model-timeout", "1", "--source", clip)
        assert result.returncode == 1 and f"{url}: no answer" in result.stderr
        assert time.monotonic() - started < within(30)

    wrong = f"triton://127.0.0.1:{served.port}/other"
    result = _crashwatch("monitor", "--model", wrong, "--source", clip)
    assert result.returncode == 1 and "no ready model 'other_vision'" in result.stderr
    assert f"{NAME}_vision" in result.stderr  # what it does serve
    for bad in ("triton://127.0.0.1/cw", "http://127.0.0.1:8001/cw", "triton://127.0.0.1:8001/"):
        result = _crashwatch("monitor", "--model", bad, "--source", clip)
        assert result.returncode == 1 and f"--model {bad!r}: expected triton://HOST:PORT/NAME" in result.stderr
    result = _crashwatch("monitor", "--model", served.url, "--bundle", str(DEMO_BUNDLE), "--source", clip)
    assert result.returncode == 2 and "--model runs the bundle a Triton server serves" in result.stderr
    result = _crashwatch("monitor", "--model-timeout", "3", "--source", clip)
    assert result.returncode == 2 and "--model-timeout needs --model URL" in result.stderr


def test_missing_packages_are_named_with_what_to_install(tmp_path):
    result = _crashwatch("serve-triton", "--bundle", str(DEMO_BUNDLE), "--port", str(free_port()),
                         prelude=forbid("pytriton"))
    assert result.returncode == 1 and "nvidia-pytriton wheel" in result.stderr
    assert "pip install 'crashwatch[triton]'" in result.stderr and "Traceback" not in result.stderr
    result = _crashwatch("monitor", "--model", f"triton://127.0.0.1:{free_port()}/cw", "--source",
                         str(write_video(tmp_path / "c.mp4", 20)), prelude=forbid("tritonclient"))
    assert result.returncode == 1 and "tritonclient package is not installed" in result.stderr


def test_failed_model_calls_skip_their_strides_and_are_reported(tiny_bundle, tmp_path):
    """Where the monitor calls the model: a head call that fails skips its window (counted, the error in status),
    and the windows after it are scored."""
    model = RiskModel.open(tiny_bundle)
    model.timing()  # the start-up measurement's calls, before the flaky head: the test counts the monitor's
    head, calls = model.engine.graphs["head"], []

    def flaky(feed):
        calls.append(1)
        if 3 <= len(calls) <= 5:
            raise EngineError("triton://127.0.0.1:1/cw_head", "[StatusCode.UNAVAILABLE] connection refused")
        return head(feed)

    model.engine = dataclasses.replace(model.engine, graphs={**model.engine.graphs, "head": flaky})
    # Explanations off: an alert's explanation calls the head too, and this counts the scoring's calls.
    monitor = _monitor(model, str(write_video(tmp_path / "c.mp4", 60, fps=10)), replay="fast", explain="off")
    summary = monitor.run()
    assert summary["strides_skipped"] == 3 and summary["strides"] == len(calls) - 3
    status = monitor.status().model_calls
    assert status["failures"] == 3 and status["state"] == "ok"  # it answered again after
    assert status["source"] == "triton://127.0.0.1:1/cw_head" and "connection refused" in status["last_error"]
    after = monitor.risks[2]  # the first window scored after the three that failed
    assert "model calls failed" in after.stride_reason and after.effective_stride_s == pytest.approx(4 * monitor.stride)


def test_a_cameras_file_runs_every_camera_on_a_triton_model(served, tiny_bundle, tmp_path):
    clips = [write_video(tmp_path / f"{name}.mp4", 60, fps=10) for name in ("front", "yard")]
    local = _monitor(RiskModel.open(tiny_bundle), str(clips[0]), replay="fast")
    local.run()
    config = tmp_path / "cameras.yaml"
    config.write_text(f"model: {served.url}\npub: tcp://127.0.0.1:{free_port()}\ncameras:\n"
                      + "".join(f"  - {{name: {c.stem}, source: {c}, replay: fast}}\n" for c in clips))
    result = _crashwatch("monitor", "--config", str(config))
    assert result.returncode == 0, result.stderr
    for name in ("front", "yard"):  # the same clip content: both get the local bundle's strides
        assert f"{name} stopped: {len(local.risks)} strides (0 skipped)" in result.stdout, result.stdout
