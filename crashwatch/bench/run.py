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

from crashwatch.bench.baselines import research_query_time, torch_stride_time
from crashwatch.bench.cameras import add_camera_rows
from crashwatch.bench.floor import macs_per_stride, openvino_peak_macs_per_s, peak_macs_per_s, text_work
from crashwatch.bench.process import monitor_process, write_moving_clip
from crashwatch.bench.report import Table, machine, write_report
from crashwatch.bench.rtsp import reconnect_after_outage, rtsp_server_available
from crashwatch.bench.strides import preprocess_times, stride_times
from crashwatch.contract.bundle import Manifest
from crashwatch.contract.prompt import PromptLayout
from crashwatch.monitor.engines.local import Runtime, openvino_installed
from crashwatch.monitor.engines.model import RiskModel


def _architecture(manifest: Manifest) -> dict[str, Any] | None:
    """The backbone architecture of a bundle's source checkpoint, when that checkpoint is still there."""
    from crashwatch.train.checkpoint import META

    meta = Path(manifest.raw.get("source_checkpoint", "")) / META
    if not meta.is_file():
        return None
    config = json.loads(meta.read_text())["backbone_config"]
    return {"vision_config": config["vision_config"], "text_config": config["text_config"],
            "scale_factor": config["scale_factor"]}


def _runtimes_for(manifest: Manifest) -> list[Runtime]:
    """onnxruntime, and OpenVINO where it has graphs worth running: its own, or float ONNX ones (it runs
    onnxruntime's int8 graphs slowly, and ``auto`` never takes it there)."""
    if openvino_installed() and (manifest.openvino is not None or manifest.precision != "int8"):
        return [Runtime.ONNXRUNTIME, Runtime.OPENVINO]
    return [Runtime.ONNXRUNTIME]


def _layout_rows(table: Table, manifests: dict[str, Manifest], strides: dict[str, dict[str, Any]]) -> None:
    """The prompt layouts side by side on onnxruntime (cached stride, measured above in this run): a streaming
    bundle against a smolvlm one of the same model, frame size, precision and window, and a streaming bundle
    against another of the same model with fewer frames in its window."""
    def model(m: Manifest) -> tuple:
        return (m.raw["model"]["parameters"], m.pixels.image_size, m.precision)

    for a, ma in manifests.items():
        for b, mb in manifests.items():
            if mb.layout is not PromptLayout.STREAMING or model(ma) != model(mb):
                continue
            ratio = strides[a]["cached"] / strides[b]["cached"]
            if ma.layout is PromptLayout.SMOLVLM and ma.window == mb.window:
                table.add(f"{b} vs {a}: streaming vs smolvlm layout, cached stride ({ma.precision}, onnxruntime)",
                          f"{ratio:.2f}x", f"{'streaming' if ratio > 1 else 'smolvlm'} faster: "
                          f"{strides[a]['cached'] * 1000:.0f} vs {strides[b]['cached'] * 1000:.0f} ms, "
                          f"{ma.window.num_frames} frames, {ma.pixels.image_size} px")
            elif ma.layout is PromptLayout.STREAMING and ma.window.num_frames < mb.window.num_frames:
                table.add(f"{b} vs {a}: {mb.window.num_frames} vs {ma.window.num_frames} frames, streaming, cached stride",
                          f"{1 / ratio:.2f}x the cost", f"{strides[b]['cached'] * 1000:.0f} vs "
                          f"{strides[a]['cached'] * 1000:.0f} ms ({mb.precision}, onnxruntime)")


def run(smoke: bool, bundles: dict[str, Path], demo_bundle: Path | None, out: Path | None,
        command: str, bundles_only: bool = False, cameras_bundle: Path | None = None,
        live_clip: Path | None = None) -> Table:
    table = Table()
    repeats = 3 if smoke else 10
    work = Path(tempfile.mkdtemp(prefix="crashwatch-bench-"))

    # 6 first: the machine's peak, while nothing else of ours runs.
    probe_s = 0.3 if smoke else 2.0
    peak = {f"onnxruntime {p}": peak_macs_per_s(p, probe_s) for p in ("fp32", "int8")}
    if openvino_installed():
        peak.update({f"OpenVINO {p}": openvino_peak_macs_per_s(p, probe_s) for p in ("f32", "bf16")})
    fastest = max(peak, key=peak.get)
    float_rates = {k: v for k, v in peak.items() if "int8" not in k}  # attention multiplies activations: no int8
    fastest_float = max(float_rates, key=float_rates.get)
    table.add("matmul probe, 1024^3", ", ".join(f"{k} {v / 1e9:.1f}" for k, v in peak.items()) + " GMAC/s",
              f"the CPU's measured peak, for the floor below: fastest {fastest}")

    for size in (512, 128):
        pre = preprocess_times(size, repeats)
        table.add(f"one 4K frame preprocessed for {size} px", f"{pre['served_ms']:.0f} ms",
                  f"exact Lanczos from the full frame: {pre['exact_ms']:.0f} ms "
                  f"({pre['exact_ms'] / pre['served_ms']:.1f}x); the served path pre-shrinks by area")

    strides: dict[str, dict[str, Any]] = {}
    for name, bundle in bundles.items():
        manifest = Manifest.read(bundle)
        precision = manifest.precision
        per_runtime = {r: stride_times(bundle, repeats, r.value) for r in _runtimes_for(manifest)}
        s = strides[name] = per_runtime[Runtime.ONNXRUNTIME]
        for runtime, r in per_runtime.items():
            label = f"{name} {precision}, {runtime.value} at {r['inference_precision']}"
            table.add(f"{label}: stride, cached (1 new frame)", f"{r['cached'] * 1000:.0f} ms",
                      f"encode {r['encode_ms']:.0f} ms + score {r['score_ms']:.0f} ms, {r['prompt_tokens']} prompt tokens, "
                      f"{manifest.pixels.image_size} px, {manifest.layout.value} layout")
            table.add(f"{label}: stride, naive (all {r['frames']} frames re-encoded)", f"{r['naive'] * 1000:.0f} ms",
                      f"cached is {r['naive'] / r['cached']:.1f}x faster")
        if Runtime.OPENVINO in per_runtime:
            auto = RiskModel.open(bundle, runtime=Runtime.AUTO).engine.choice
            ratio = s["cached"] / per_runtime[Runtime.OPENVINO]["cached"]
            table.add(f"{name}: OpenVINO vs onnxruntime {precision}, cached stride", f"{ratio:.2f}x",
                      f"{'OpenVINO' if ratio > 1 else 'onnxruntime'} faster here; --runtime auto, "
                      f"{auto.why if auto is not None else 'one runtime only'}")
        arch = _architecture(manifest)
        if arch is not None:
            macs = macs_per_stride({**text_work(manifest, s["prompt_tokens"]), "image_size": manifest.pixels.image_size},
                                   arch)
            floor = (macs["vision"] + macs["text"]) / peak[fastest] + macs["attention"] / peak[fastest_float]
            best = min(r["cached"] for r in per_runtime.values())
            table.add(f"{name}: floor", f"{floor * 1000:.0f} ms",
                      f"{sum(macs.values()) / 1e9:.1f} GMAC per stride (weights: vision {macs['vision'] / 1e9:.1f}, text "
                      f"{macs['text'] / 1e9:.1f} at {fastest}; attention {macs['attention'] / 1e9:.1f} at "
                      f"{fastest_float}); fastest measured stride = {best / floor:.1f}x the floor")

    _layout_rows(table, {name: Manifest.read(bundle) for name, bundle in bundles.items()}, strides)

    if bundles:  # the real-time replay each bundle faces live: effective stride, latency, frames encoded
        live = live_clip or write_moving_clip(work, 4 if smoke else 20)
        what = live.name if live_clip else f"{'4' if smoke else '20'} s at 30 fps"
        for name, bundle in bundles.items():
            runtimes = _runtimes_for(Manifest.read(bundle))
            # and as a user's monitor runs it where both can: each graph on the runtime timed faster
            for runtime in runtimes + ([Runtime.AUTO] if Runtime.OPENVINO in runtimes else []):
                r = monitor_process(bundle, live, "realtime", runtime=runtime.value)
                model = r["model"] or {}
                effective = "n/a" if r["effective_stride_s"] is None else f"{r['effective_stride_s']:.2f} s"
                latency = r.get("latency_ms", {})
                table.add(f"{name}, {runtime.value} at {model.get('inference_precision', '?')}: real-time replay "
                          f"({what})",
                          f"effective stride {effective}, latency p99 {latency.get('p99', float('nan')):.0f} ms",
                          f"{r['messages']} risk messages; windows encoding more frames than were new: "
                          f"{r['excess_encodes']}; monitor peak RSS {r['peak_rss_mb']:.0f} MB")

    if not smoke and not bundles_only:
        for config_name in ("smolvlm2-256m", "smolvlm2-500m"):
            research, length = research_query_time(config_name, 3, bundles.get(config_name))
            table.add(f"{config_name}: research way (HF full forward, eager fp32, 8 frames)", f"{research * 1000:.0f} ms",
                      f"{length} prompt tokens")
            if config_name in strides:
                table.add(f"{config_name}: monitor path vs research way",
                          f"{research / strides[config_name]['cached']:.1f}x faster")
            bf16 = torch_stride_time(config_name, 3, "bf16", length)
            fp32 = torch_stride_time(config_name, 3, "fp32", length)
            table.add(f"{config_name}: PyTorch stride (1 frame + score), fp32 / bf16",
                      f"{fp32 * 1000:.0f} / {bf16 * 1000:.0f} ms", "reference for the ONNX figures")

    if demo_bundle is not None and not bundles_only:
        replay_seconds = 5 if smoke else 600
        clip = write_moving_clip(work, replay_seconds)
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
        fast_clip = write_moving_clip(work, 10) if smoke else clip
        plain = monitor_process(demo_bundle, fast_clip, "fast")["wall_s"]
        stalled = monitor_process(demo_bundle, fast_clip, "fast", stalled_subscriber=True)["wall_s"]
        table.add("demo bundle: fast replay with a stalled subscriber connected vs none",
                  f"{stalled:.1f} s vs {plain:.1f} s", f"ratio {stalled / plain:.2f} (1.00: the stalled reader costs nothing)")
        short = write_moving_clip(work, 3 if smoke else 6)
        for name, bundle in bundles.items():
            table.add(f"{name}: monitor peak RSS", f"{monitor_process(bundle, short, 'fast')['peak_rss_mb']:.0f} MB")

    if cameras_bundle is not None or smoke:  # many cameras: one process against as many processes
        add_camera_rows(table, cameras_bundle or demo_bundle, (2,) if smoke else (1, 2, 4, 8), 5 if smoke else 60, work)

    if out is not None:
        write_report(out, f"Machine: {machine()}\n\nReproduce: `{command}`\n\n{table.markdown()}\n")
    return table
