"""The full ``crashwatch bench`` run: every measurement in one process, in an order that keeps them apart
(the matmul probe first, while nothing else of ours runs), into one table.

Random weights of the real architectures cost exactly what trained weights cost. Every figure is the median
over repeats after warm-up, all measured in the same process and minutes, so ratios compare like with like.
``--smoke`` runs everything cheap in seconds (few repeats, short replays) so that ``make test`` keeps the
suite working.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from contract.bundle import Manifest
from crashwatch.bench.baselines import research_query_time, torch_stride_time
from crashwatch.bench.floor import macs_per_stride, peak_macs_per_s
from crashwatch.bench.process import monitor_process, replay_clip
from crashwatch.bench.report import Table, machine, write_report
from crashwatch.bench.rtsp import reconnect_after_outage, rtsp_server_available
from crashwatch.bench.strides import preprocess_times, stride_times


def _architecture(manifest: Manifest) -> dict[str, Any] | None:
    """The backbone architecture of a bundle's source checkpoint, when that checkpoint is still there."""
    from train.checkpoint import META

    meta = Path(manifest.raw.get("source_checkpoint", "")) / META
    if not meta.is_file():
        return None
    config = json.loads(meta.read_text())["backbone_config"]
    return {"vision_config": config["vision_config"], "text_config": config["text_config"],
            "scale_factor": config["scale_factor"]}


def run(smoke: bool, bundles: dict[str, Path], demo_bundle: Path | None, out: Path | None,
        command: str) -> Table:
    table = Table()
    repeats = 3 if smoke else 10
    work = Path(tempfile.mkdtemp(prefix="crashwatch-bench-"))

    # 6 first: the machine's peak, while nothing else of ours runs.
    peak = {p: peak_macs_per_s(p, 0.3 if smoke else 2.0) for p in ("fp32", "int8")}
    table.add("matmul probe, onnxruntime, 1024^3", f"fp32 {peak['fp32'] / 1e9:.1f} GMAC/s, int8 {peak['int8'] / 1e9:.1f} GMAC/s",
              "the CPU's measured peak, for the floor below")

    for size in (512, 128):
        pre = preprocess_times(size, repeats)
        table.add(f"one 4K frame preprocessed for {size} px", f"{pre['served_ms']:.0f} ms",
                  f"exact Lanczos from the full frame: {pre['exact_ms']:.0f} ms "
                  f"({pre['exact_ms'] / pre['served_ms']:.1f}x); the served path pre-shrinks by area")

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
            macs = macs_per_stride({"prompt_tokens": s["prompt_tokens"], "image_size": manifest.pixels.image_size}, arch)
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
        clip = replay_clip(work, replay_seconds)
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
        if result["first_risk"] is not None:
            first = result["first_risk"]
            table.add("demo bundle: first risk message of a fresh stream received",
                      f"risk #{first['seq']} at stream time {first['t']:.2f} s",
                      f"{'a partial window' if first['partial'] else 'a full window'}, {first['latency_ms']:.0f} ms after "
                      "its frame was captured (a message sent before the subscription was live is missed: #1 is at 0 s)")
        if not smoke and rtsp_server_available():
            outage = reconnect_after_outage(demo_bundle, 8.0)
            table.add("demo bundle: RTSP camera stopped for 8 s", f"first risk {outage['back_after_s']:.1f} s after it "
                      "came back", f"outage counted {outage['outages_total_s']:.1f} s; strides skipped meanwhile "
                      f"{outage['strides_skipped']}")
        fast_clip = replay_clip(work, 10) if smoke else clip
        plain = monitor_process(demo_bundle, fast_clip, "fast")["wall_s"]
        stalled = monitor_process(demo_bundle, fast_clip, "fast", stalled_subscriber=True)["wall_s"]
        table.add("demo bundle: fast replay with a stalled subscriber connected vs none",
                  f"{stalled:.1f} s vs {plain:.1f} s", f"ratio {stalled / plain:.2f} (1.00: the stalled reader costs nothing)")
        short = replay_clip(work, 3 if smoke else 6)
        for name, bundle in bundles.items():
            table.add(f"{name}: monitor peak RSS", f"{monitor_process(bundle, short, 'fast')['peak_rss_mb']:.0f} MB")

    if out is not None:
        write_report(out, f"Machine: {machine()}\n\nReproduce: `{command}`\n\n{table.markdown()}\n")
    return table
