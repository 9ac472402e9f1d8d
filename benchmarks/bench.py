"""``crashwatch bench``: what a stride costs, measured side by side in one run, written to BENCHMARKS.md.

Random weights of the real architectures cost exactly what trained weights cost. Every figure is the median
over repeats after warm-up, all measured in the same process and minutes, so ratios compare like with like:

1. per stride, cached (one new frame encoded, the window scored from cached embeddings) vs naive (every
   frame of the window re-encoded), 8-frame window, per bundle;
2. the monitor's path vs the research code's way (the Hugging Face model's full forward, PyTorch eager
   fp32, over the whole window for every query);
3. ONNX fp32 vs int8, and PyTorch bf16 for reference;
4. end-to-end latency from a frame's capture to its risk message at a subscriber, and lag over a replay;
5. peak resident memory of the monitor process per bundle;
6. the floor: multiply-accumulates per stride over this CPU's measured peak (a matmul probe, fp32 and int8).

``--smoke`` runs everything cheap in seconds (tiny model, few repeats) so that ``make test`` keeps the
suite working; the full run builds and exports the 256M and 500M architectures unless bundles are given.

    crashwatch bench [--smoke] [--bundle-256m B] [--bundle-500m B] [--demo-bundle B] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from monitor.bundle import Manifest

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Table:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (measure, figure, note)

    def add(self, measure: str, figure: str, note: str = "") -> None:
        log.info("%s: %s %s", measure, figure, note)
        self.rows.append((measure, figure, note))

    def markdown(self) -> str:
        lines = ["| measure | figure | note |", "| --- | --- | --- |"]
        lines += [f"| {m} | {f} | {n} |" for m, f, n in self.rows]
        return "\n".join(lines)


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                  if l.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    simd = sorted({f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags})
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB, {' '.join(simd)}; Python {platform.python_version()}"


# -- strides ----------------------------------------------------------------------------------------------

def _frames(count: int, size: tuple[int, int] = (640, 360)):
    from monitor.source import Frame

    rng = np.random.default_rng(0)
    return [Frame(i, i / 30, time.time(), rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
            for i in range(count)]


def stride_times(bundle: Path, repeats: int) -> dict[str, float]:
    """Seconds per stride: cached (one new frame) and naive (whole window re-encoded)."""
    from monitor.bundle import RiskModel
    from monitor.preprocess import PixelSpec
    from monitor.scorer import WindowScorer
    from monitor.window import WindowGeometry

    model = RiskModel(bundle)
    m = model.manifest
    geometry = WindowGeometry(m.window_seconds, m.num_frames)
    pixels = PixelSpec(m.image_size, m.image_mean, m.image_std)
    fps = 30
    frames = _frames(int((m.window_seconds + geometry.spacing * (repeats + 3)) * fps) + 2)
    for f in frames:
        f.t = f.id / fps
    ends = [m.window_seconds + k * geometry.spacing for k in range(repeats + 2)]
    cached, naive = WindowScorer(model, geometry, pixels), WindowScorer(model, geometry, pixels, cache=False)
    cached.score(frames, ends[0])
    cached_times, naive_times, encode, score = [], [], [], []
    for end in ends[1:]:
        start = time.perf_counter()
        result = cached.score(frames, end)
        cached_times.append(time.perf_counter() - start)
        encode.append(result.encode_ms)
        score.append(result.score_ms)
        start = time.perf_counter()
        naive.score(frames, end)
        naive_times.append(time.perf_counter() - start)
    return {"cached": statistics.median(cached_times), "naive": statistics.median(naive_times),
            "encode_ms": statistics.median(encode), "score_ms": statistics.median(score),
            "frames": m.num_frames, "prompt_tokens": model.prompt_length}


# -- the research code's way, and bf16 --------------------------------------------------------------------

def research_query_time(config_name: str, repeats: int, bundle: Path | None = None) -> tuple[float, int]:
    """The Hugging Face model's full forward over an 8-frame window at 512 px, eager attention, fp32; with a
    bundle, on that bundle's exact prompt (the checkpoint's tokenizer), else the built-in tokenizer's.
    Returns seconds per query and the prompt's length."""
    import torch
    from transformers import SmolVLMForConditionalGeneration

    from train.config import load_config
    from train.dataset import PromptEncoder
    from train.model import smolvlm_config
    from train.tokenizer import builtin_tokenizer

    config = load_config(REPO / "configs" / f"{config_name}.yaml")
    if bundle is not None:
        prompt = np.load(bundle / "prompt_ids.npy")
        image_token_id = Manifest.read(bundle).image_token_id
    else:
        tokenizer = builtin_tokenizer()
        image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vlm = smolvlm_config(config.backbone.architecture, image_token_id, "eager")
    model = SmolVLMForConditionalGeneration(vlm).eval()
    if bundle is None:
        prompt = PromptEncoder(tokenizer, config.geometry, int(model.model.image_seq_len))(config.question)
    ids = torch.tensor(np.asarray(prompt, dtype=np.int64))[None]
    pixels = torch.randn(1, config.num_frames, 3, config.image_size, config.image_size)
    with torch.no_grad():
        seconds = median_time(lambda: model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels),
                              repeats)
    return seconds, int(ids.shape[1])


def torch_stride_time(config_name: str, repeats: int, dtype: str, length: int) -> float:
    """PyTorch doing the monitor's own stride: one frame encoded, one window of ``length`` prompt tokens scored
    (bf16 for reference)."""
    import torch

    from train.config import load_config
    from train.model import CrashRiskModel

    config = load_config(REPO / "configs" / f"{config_name}.yaml")
    config.backbone.random_init = True
    model = CrashRiskModel.from_backbone_config(config.backbone, config.head, 257).eval()
    hidden = model.backbone.config.text_config.hidden_size
    frame = torch.randn(1, 3, config.image_size, config.image_size)
    embeds, mask = torch.randn(1, length, hidden), torch.ones(1, length, dtype=torch.long)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    with torch.no_grad(), autocast:
        return median_time(lambda: (model.encode_frames(frame), model.score(embeds, mask)), repeats)


# -- floor --------------------------------------------------------------------------------------------------

def macs_per_stride(manifest: dict[str, Any], config: dict[str, Any]) -> dict[str, float]:
    """Multiply-accumulates of one stride: the vision tower and connector for one frame, the text model over the
    whole prompt (matmuls only; norms and softmax are a few percent). Weight matmuls (``vision``, ``text``) are
    kept apart from the activation-by-activation ones of attention (``attention``): int8 quantisation reaches
    the former only, so the latter run at the fp32 rate whatever the bundle's precision."""
    vision, text = config["vision_config"], config["text_config"]
    patches = (vision["image_size"] // vision["patch_size"]) ** 2
    d, ff = vision["hidden_size"], vision["intermediate_size"]
    vision_macs = patches * 3 * vision["patch_size"] ** 2 * d  # patch embedding
    vision_macs += vision["num_hidden_layers"] * patches * (4 * d * d + 2 * d * ff)
    attention = vision["num_hidden_layers"] * 2 * patches * patches * d
    tokens = patches // config["scale_factor"] ** 2
    vision_macs += tokens * d * config["scale_factor"] ** 2 * text["hidden_size"]  # connector
    length = manifest["prompt_tokens"]
    h, f = text["hidden_size"], text["intermediate_size"]
    kv = h // text["num_attention_heads"] * text["num_key_value_heads"]
    text_macs = text["num_hidden_layers"] * length * (2 * h * h + 2 * h * kv + 3 * h * f)
    attention += text["num_hidden_layers"] * length * length * h  # causal: half of QK^T and of AV
    return {"vision": float(vision_macs), "text": float(text_macs), "attention": float(attention)}


def peak_macs_per_s(precision: str, seconds: float = 1.0) -> float:
    """A matmul probe in onnxruntime (the monitor's engine): fp32 MatMul or int8 MatMulInteger, 1024^3."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = 1024
    if precision == "int8":
        node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
        inputs = [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
                  helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])]
        out = helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])
        feed = {"a": np.random.randint(0, 255, (n, n), dtype=np.uint8), "b": np.random.randint(-127, 127, (n, n), dtype=np.int8)}
    else:
        node = helper.make_node("MatMul", ["a", "b"], ["c"])
        inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b")]
        out = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
        feed = {"a": np.random.rand(n, n).astype(np.float32), "b": np.random.rand(n, n).astype(np.float32)}
    graph = helper.make_graph([node], "probe", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    repeats = max(3, int(seconds / 0.05))
    return n ** 3 / median_time(lambda: session.run(None, feed), repeats)


# -- the monitor as a process: latency, lag, memory ---------------------------------------------------------

def monitor_process(bundle: Path, clip: Path, replay: str, seconds: float | None = None,
                    stalled_subscriber: bool = False) -> dict[str, Any]:
    """Run ``crashwatch monitor`` on ``clip``; a subscriber here takes every risk message (and, if asked, a
    second one connects and never reads). Returns latency (capture -> received) percentiles, lag from status,
    the process's peak resident memory and its wall time."""
    import socket

    import zmq

    from monitor.subscribe import Subscriber

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    subscriber = Subscriber(endpoint)
    stalled = None
    if stalled_subscriber:
        stalled = zmq.Context.instance().socket(zmq.SUB)
        stalled.setsockopt(zmq.RCVHWM, 1)
        stalled.setsockopt(zmq.SUBSCRIBE, b"")
        stalled.connect(endpoint)
    # VmHWM, not getrusage's ru_maxrss: Linux carries the parent's high-water mark into the child across
    # fork and exec, and this process may have held gigabytes of PyTorch models by then.
    script = ("import sys\nfrom crashwatch.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
              "print('MAXRSS', hwm.split()[1], file=sys.stderr)\n")
    args = ["crashwatch", "-q", "monitor", "--bundle", str(bundle), "--source", str(clip), "--replay", replay,
            "--pub", endpoint]
    process = subprocess.Popen([sys.executable, "-c", f"import sys; sys.argv = {args!r}\n" + script], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    latencies, lags = [], []
    started = time.monotonic()
    while process.poll() is None:
        item = subscriber.receive(timeout=0.2)
        if item is not None:
            topic, message = item
            if topic == "risk":
                latencies.append((time.time() - message["captured_at"]) * 1000)
            elif topic == "status" and message.get("lag_s") is not None:
                lags.append((time.monotonic() - started, message["lag_s"]))
        if seconds is not None and time.monotonic() - started > seconds:
            process.terminate()
    _, err = process.communicate(timeout=30)
    wall = time.monotonic() - started
    subscriber.close()
    if stalled is not None:
        stalled.close(0)
    maxrss = next((int(l.split()[1]) for l in err.splitlines() if l.startswith("MAXRSS")), 0)
    result = {"peak_rss_mb": maxrss / 1024, "messages": len(latencies), "wall_s": wall}
    if latencies:
        result["latency_ms"] = {"p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99))}
    if lags:
        tenth = max(len(lags) // 10, 1)
        first, last = [l for _, l in lags[:tenth]], [l for _, l in lags[-tenth:]]
        result["lag_s"] = {"p99": float(np.percentile([l for _, l in lags], 99)),
                           "first_tenth": statistics.median(first), "last_tenth": statistics.median(last),
                           "first_tenth_p99": float(np.percentile(first, 99)),
                           "last_tenth_p99": float(np.percentile(last, 99))}
    return result


# -- the run ------------------------------------------------------------------------------------------------

def _architecture(manifest: Manifest) -> dict[str, Any] | None:
    """The backbone architecture of a bundle's source checkpoint, when that checkpoint is still there."""
    meta = Path(manifest.raw.get("source_checkpoint", "")) / "crashwatch.json"
    if not meta.is_file():
        return None
    config = json.loads(meta.read_text())["backbone_config"]
    return {"vision_config": config["vision_config"], "text_config": config["text_config"],
            "scale_factor": config["scale_factor"]}


def _replay_clip(folder: Path, seconds: float, fps: int = 30) -> Path:
    """A 640x360 clip at ``fps`` with moving content, written for the latency and lag runs."""
    import cv2

    path = folder / f"replay_{int(seconds)}s.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
    for i in range(int(seconds * fps)):
        frame = np.full((360, 640, 3), 90, np.uint8)
        x = (i * 7) % 600
        cv2.rectangle(frame, (x, 150), (x + 40, 200), (30, 30, 220), -1)
        writer.write(frame)
    writer.release()
    return path


def run(smoke: bool, bundles: dict[str, Path], demo_bundle: Path | None, out: Path | None,
        command: str) -> Table:
    table = Table()
    repeats = 3 if smoke else 10
    work = Path(tempfile.mkdtemp(prefix="crashwatch-bench-"))

    # 6 first: the machine's peak, while nothing else of ours runs.
    peak = {p: peak_macs_per_s(p, 0.3 if smoke else 2.0) for p in ("fp32", "int8")}
    table.add("matmul probe, onnxruntime, 1024^3", f"fp32 {peak['fp32'] / 1e9:.1f} GMAC/s, int8 {peak['int8'] / 1e9:.1f} GMAC/s",
              "the CPU's measured peak, for the floor below")

    strides: dict[str, dict[str, float]] = {}
    for name, bundle in bundles.items():
        s = strides[name] = stride_times(bundle, repeats)
        manifest = Manifest.read(bundle)
        precision = manifest.precision
        table.add(f"{name} {precision}: stride, cached (1 new frame)", f"{s['cached'] * 1000:.0f} ms",
                  f"encode {s['encode_ms']:.0f} ms + score {s['score_ms']:.0f} ms, {s['prompt_tokens']} prompt tokens")
        table.add(f"{name} {precision}: stride, naive (all {s['frames']} frames re-encoded)", f"{s['naive'] * 1000:.0f} ms",
                  f"cached is {s['naive'] / s['cached']:.1f}x faster")
        arch = _architecture(manifest)
        if arch is not None:
            macs = macs_per_stride({"prompt_tokens": s["prompt_tokens"]}, arch)
            weights_rate = peak["int8" if precision == "int8" else "fp32"]
            floor = (macs["vision"] + macs["text"]) / weights_rate + macs["attention"] / peak["fp32"]
            table.add(f"{name} {precision}: floor", f"{floor * 1000:.0f} ms",
                      f"{sum(macs.values()) / 1e9:.1f} GMAC per stride (weights: vision {macs['vision'] / 1e9:.1f}, text "
                      f"{macs['text'] / 1e9:.1f} at {precision}; attention {macs['attention'] / 1e9:.1f} at fp32); "
                      f"measured stride = {s['cached'] / floor:.1f}x the floor")

    if not smoke:
        for config_name in ("smolvlm2-256m", "smolvlm2-500m"):
            research, length = research_query_time(config_name, 3, bundles.get(config_name))
            table.add(f"{config_name}: research way (HF full forward, eager fp32, 8 frames)", f"{research * 1000:.0f} ms",
                      f"{length} prompt tokens")
            if config_name in strides:
                table.add(f"{config_name}: monitor path vs research way",
                          f"{research / strides[config_name]['cached']:.1f}x faster")
            bf16 = torch_stride_time(config_name, 3, "bf16", length)
            fp32 = torch_stride_time(config_name, 3, "fp32", length)
            table.add(f"{config_name}: PyTorch stride (1 frame + score), fp32 / bf16", f"{fp32 * 1000:.0f} / {bf16 * 1000:.0f} ms",
                      "reference for the ONNX figures")

    if demo_bundle is not None:
        replay_seconds = 5 if smoke else 600
        clip = _replay_clip(work, replay_seconds)
        result = monitor_process(demo_bundle, clip, "realtime")
        if "latency_ms" in result:
            table.add("demo bundle: capture -> subscriber latency, 30 fps replay",
                      f"p50 {result['latency_ms']['p50']:.0f} ms, p99 {result['latency_ms']['p99']:.0f} ms",
                      f"{result['messages']} risk messages")
        if "lag_s" in result:
            lag = result["lag_s"]
            table.add(f"demo bundle: lag over a {replay_seconds} s replay",
                      f"p99 {lag['p99']:.2f} s; first tenth median {lag['first_tenth']:.2f} / p99 "
                      f"{lag['first_tenth_p99']:.2f} s, last tenth median {lag['last_tenth']:.2f} / p99 "
                      f"{lag['last_tenth_p99']:.2f} s",
                      "lag = newest frame's time minus the last window scored: a sawtooth between 0 and one stride "
                      "plus the model's time when the monitor keeps up")
        table.add("demo bundle: monitor peak RSS", f"{result['peak_rss_mb']:.0f} MB")
        fast_clip = _replay_clip(work, 10) if smoke else clip
        plain = monitor_process(demo_bundle, fast_clip, "fast")["wall_s"]
        stalled = monitor_process(demo_bundle, fast_clip, "fast", stalled_subscriber=True)["wall_s"]
        table.add("demo bundle: fast replay with a stalled subscriber connected vs none",
                  f"{stalled:.1f} s vs {plain:.1f} s", f"ratio {stalled / plain:.2f} (1.00: the stalled reader costs nothing)")
        short = _replay_clip(work, 3 if smoke else 6)
        for name, bundle in bundles.items():
            table.add(f"{name}: monitor peak RSS", f"{monitor_process(bundle, short, 'fast')['peak_rss_mb']:.0f} MB")

    if out is not None:
        write_report(out, f"Machine: {machine()}\n\nReproduce: `{command}`\n\n{table.markdown()}\n")
    return table


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_report(out: Path, measured: str) -> None:
    """Put the measured part between the markers of ``out``, keeping the analysis written around it; a new
    file gets a title and the markers."""
    text = out.read_text(encoding="utf-8") if out.is_file() else ""
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
    else:
        head, tail = "# Benchmarks\n\n", "\n"
    out.write_text(f"{head}{BEGIN}\n{measured}{END}{tail}", encoding="utf-8")
