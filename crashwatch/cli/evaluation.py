"""Commands that measure: ``replay-eval``, ``metrics``, ``calibrate``, ``bench`` and ``explain``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from crashwatch.cli.options import (
    SECONDS,
    alert_on_option,
    budget_option,
    caution_budget_option,
    confidence_option,
    existing_dir,
    min_normal_hours_option,
    runtime_option,
    skip_bad_option,
    split_option,
    stride_option,
    warning_window_option,
)
from crashwatch.evaluation.certainty import CONFIDENCE
from crashwatch.evaluation.field import METRICS_CSV, METRICS_JSON, summary_lines


@click.command("replay-eval")
@click.option("--bundle", "bundle_dir", required=True, type=click.Path(path_type=Path), help="Bundle folder.")
@click.option("--data", "data_dir", required=True, type=existing_dir, help="Dataset folder (research format).")
@split_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where replay_eval.csv, replay_eval.json, metrics.json, metrics.csv, plots/ and traces/ go.")
@stride_option
@alert_on_option
@skip_bad_option
@warning_window_option
@budget_option
@confidence_option
@min_normal_hours_option
@runtime_option
def replay_eval_command(bundle_dir: Path, data_dir: Path, split: str, out_dir: Path, stride: float | None,
                        alert_on: float | None, skip_bad: bool, warning_window: float, budget: float,
                        confidence: float | None, min_normal_hours: float, runtime: str) -> None:
    """Replay every clip of a split through the monitor and report alerts, time-to-accident, false alerts,
    the operating curve over other alert thresholds, and the field's metrics (DAD/CCD AP, mTTA, TTA@R80; the
    Nexar score; recall at a false-alarm budget)."""
    s = _replay(bundle_dir, data_dir, split, out_dir, stride, alert_on, skip_bad, warning_window, budget,
                min_normal_hours, runtime, confidence)
    pick = s["within_budget"]
    if s.get("withheld"):
        verdict = f"no threshold recommended: {s['withheld']}"
    elif pick:
        verdict = f"best within {budget:g} false alerts/h: threshold {pick['threshold']:.2f}: {_scored(pick)}"
    else:
        verdict = f"no threshold keeps false alerts within {budget:g}/h"
    click.echo(f"operating curve: {out_dir / 'operating_curve.csv'}; {verdict}")
    for line in summary_lines(s["field"]):
        click.echo(line)
    click.echo(f"wrote {out_dir / METRICS_JSON} and {out_dir / METRICS_CSV}")


@click.command("explain")
@click.argument("bundle_dir", metavar="BUNDLE", type=existing_dir)
@click.argument("clip", metavar="CLIP", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--at", "at", required=True, type=SECONDS,
              help="Stream seconds (from the clip's start) of the window's end: the moment to explain.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("explain-output"),
              show_default=True, help="Where CLIP_ATs.json and CLIP_ATs.png go.")
@click.option("--mask", "mask", default=None, metavar="POLYGONS",
              help="Regions to leave out, as the monitor's --explain-mask takes them.")
@runtime_option
def explain_command(bundle_dir: Path, clip: Path, at: float, out_dir: Path, mask: str | None, runtime: str) -> None:
    """Explain the window of CLIP ending at --at as the monitor explains an alert: how much each frame raised
    the risk (the logit with that frame withheld, positions unchanged) and where in the most telling frame
    (a grid of cells withheld in turn), written as JSON and a PNG (docs/explanations.md)."""
    import json

    import cv2

    from crashwatch.evaluation.explained import explain_moment, explanation_card
    from crashwatch.monitor.engines.model import RiskModel
    from crashwatch.monitor.explain.regions import StaticMask
    from crashwatch.monitor.transports.subscribe import explained

    try:
        static = StaticMask.parse(mask) if mask else None
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--mask") from None
    model = RiskModel.open(bundle_dir, runtime=runtime)
    explanation, frames = explain_moment(model, clip, at, static)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = (out_dir / f"{clip.stem}_{at:.2f}s.{kind}" for kind in ("json", "png"))
    wire = {"clip": str(clip), "at": at, "bundle": str(bundle_dir), **explanation.to_wire()}
    wire.pop("frame_jpeg")
    json_path.write_text(json.dumps(wire, indent=2) + "\n", encoding="utf-8")
    card = explanation_card(explanation, frames=frames)
    if card is not None:
        cv2.imwrite(str(png_path), card)
    click.echo(f"risk {explanation.probability:.3f} at {at:g} s: {explained(explanation)}; "
               f"{explanation.compute_ms:.0f} ms")
    click.echo(f"wrote {json_path} and {png_path}")


@click.command("metrics")
@click.argument("traces_dir", metavar="TRACES", type=existing_dir)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where metrics.json and metrics.csv go [default: TRACES].")
@budget_option
@min_normal_hours_option
@click.option("--clip-seconds", type=SECONDS,
              help="Clip length the DAD/CCD protocol's published times are scaled by (UString multiplies its "
                   "relative times by it: 5 for DAD and CCD) [default: the median clip length].")
def metrics_command(traces_dir: Path, out_dir: Path | None, budget: float, min_normal_hours: float,
                    clip_seconds: float | None) -> None:
    """Compute the field's metrics again from a replay-eval folder (its replay_eval.json and traces/), without
    replaying: the DAD/CCD protocol, the Nexar score, and recall at a false-alarm budget beside the project's
    own alerts."""
    from crashwatch.evaluation.field import field_metrics, write_metrics
    from crashwatch.evaluation.traces import read_replay

    summary, traces = read_replay(traces_dir)
    metrics = field_metrics(traces, summary["threshold"], budget, summary["warning_window_s"], clip_seconds,
                            min_normal_hours)
    out_dir = out_dir or traces_dir
    write_metrics(out_dir, metrics)
    click.echo(f"{len(traces)} clips of {traces_dir}")
    for line in summary_lines(metrics):
        click.echo(line)
    click.echo(f"wrote {out_dir / METRICS_JSON} and {out_dir / METRICS_CSV}")


@click.command("calibrate")
@click.option("--bundle", "bundle_dir", required=True, type=existing_dir, help="Bundle folder whose alert threshold is set.")
@click.option("--data", "data_dir", required=True, type=existing_dir,
              help="Dataset folder of drives (research format) NOT used for testing: e.g. `crashwatch synth "
                   "--drives` of a seed used for neither training nor testing, or your own recorded driving.")
@split_option
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the replay report and operating curve go.")
@budget_option
@confidence_option
@caution_budget_option
@stride_option
@warning_window_option
@min_normal_hours_option
@runtime_option
def calibrate_command(bundle_dir: Path, data_dir: Path, split: str, out_dir: Path, budget: float,
                      confidence: float | None, caution_budget: float, stride: float | None, warning_window: float,
                      min_normal_hours: float, runtime: str) -> None:
    """Set a bundle's alert threshold for a false-alert budget: replay drives through the monitor, and keep,
    of the thresholds whose false alerts per hour stay within the budget, the one warning the most crashes
    in time (the lowest of those: the earliest warnings).

    The validation threshold a run calibrates (best F1 on clip-end windows) says nothing about how often a
    stream alerts; this does. Calibrate on drives the test never sees, then measure with replay-eval."""
    from crashwatch.evaluation.calibrate import apply_calibration

    s = _replay(bundle_dir, data_dir, split, out_dir, stride, None, False, warning_window, budget, min_normal_hours,
                runtime, confidence)
    pick = apply_calibration(bundle_dir, data_dir, split, out_dir, s, budget, warning_window, caution_budget)
    click.echo(f"{bundle_dir}: alert threshold {pick['threshold']:.2f} (was {s['threshold']:.3f}): {_scored(pick)}")
    c = pick["cautions"]
    if c is None:
        click.echo(f"no caution keeps false cautions within {caution_budget:g}/h (see {out_dir / 'caution_curve.csv'}): "
                   "the bundle names none, and a monitor cautions at 60 % of the alert threshold unless given "
                   "--caution-on")
    else:
        rise = f"or rising to the alert within {c['caution_rise_seconds']:g} s" if c["caution_rise_seconds"] else \
            "no rising rule"
        click.echo(f"{bundle_dir}: caution threshold {c['caution_threshold']:.2f} ({rise}): {_cautioned(c)}")


def _replay(bundle_dir: Path, data_dir: Path, split: str, out_dir: Path, stride: float | None, alert_on: float | None,
            skip_bad: bool, warning_window: float, budget: float, min_normal_hours: float,
            runtime: str, confidence: float | None) -> dict[str, Any]:
    """replay-eval's run and its printed summary, shared with calibrate."""
    from crashwatch.evaluation.replay import replay_eval

    s = replay_eval(bundle_dir, data_dir, split, out_dir, stride, alert_on, skip_bad,
                    warning_window, budget, min_normal_hours, runtime, confidence)
    click.echo(f"{s['clips']} clips at threshold {s['threshold']:.3f}: crash clips alerted "
               f"{s['crash_clips_alerted']}/{s['crash_clips']}; {_scored(s)}")
    if s.get("cautions"):
        click.echo(f"cautions at {s['cautions']['caution_threshold']:.3f}: {_cautioned(s['cautions'])}")
    p = s["pointing"]
    if p["explanations"]:
        game = "no clip has road-user boxes (NAME.boxes.json) for the pointing game" if p["pointing_peak"] is None \
            else (f"pointing game over {p['warnings_with_target_box']} explained warnings: peak on the colliding "
                  f"road user {p['pointing_peak']:.2f}, box {p['pointing_box']:.2f}; baselines frame centre "
                  f"{p['baseline_frame_centre']:.2f}, largest road user {p['baseline_largest_road_user']:.2f}; most "
                  f"telling frame among the last two {p['telling_in_last_two']:.2f}")
        click.echo(f"explanations: {p['ready']} ready, {p['skipped']} skipped, {p['failed']} failed (median "
                   f"{p['median_compute_ms']} ms, ready {p['median_ready_after_ms']} ms after the alert); {game}")
    if s.get("false_alerts_by_segment"):
        click.echo("false alerts by what was on screen as they started: "
                   + ", ".join(f"{kind} {count}" for kind, count in s["false_alerts_by_segment"].items()))
    click.echo(f"wrote {out_dir / 'replay_eval.csv'}, {out_dir / 'replay_eval.json'}, {out_dir / 'plots'}/ and "
               f"{out_dir / 'traces'}/")
    return s


def _cautioned(c: dict[str, Any]) -> str:
    per_hour, lead = c["false_cautions_per_hour"], c["median_first_warning_s"]
    return (f"false cautions {c['false_cautions']} ({'n/a' if per_hour is None else f'{per_hour:.1f}'}/h of normal "
            f"driving); crashes warned by a caution or an alert {c['warned_by_either']}, median first warning "
            f"{'n/a' if lead is None else f'{lead:.2f} s'} ahead")


def _scored(s: dict[str, Any]) -> str:
    rate = "" if s["alerted_before_collision_rate"] is None else f" ({s['alerted_before_collision_rate']:.0%})"
    tta = s["median_time_to_accident_s"]
    per_hour, upper = s["false_alerts_per_hour"], s.get("false_alerts_per_hour_upper")
    bound = "" if upper is None else f", at most {upper:.1f}/h at {CONFIDENCE:.0%} confidence"
    return (f"warned before the collision {s['alerted_before_collision']}/{s['crash_clips_with_event_time']}{rate}, "
            f"median time-to-accident {'n/a' if tta is None else f'{tta:.2f} s'}; false alerts {s['false_alerts']} "
            f"({'n/a' if per_hour is None else f'{per_hour:.1f}'}/h of normal driving{bound}"
            + (f", {s['normal_hours'] * 60:.1f} min of it)" if "normal_hours" in s else ")"))


@click.command("bench")
@click.option("--smoke", is_flag=True, help="Seconds-long run of every measurement with small inputs (make test).")
@click.option("--bundle", "bundles", multiple=True, type=(str, click.Path(exists=True, file_okay=False, path_type=Path)),
              help="NAME BUNDLE to measure per stride (repeatable); e.g. smolvlm2-256m bundles/256m-int8. Naming a "
                   "config (smolvlm2-256m, smolvlm2-500m) also compares it with the research code's way.")
@click.option("--demo-bundle", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Bundle for the latency and lag replay (default: the shipped demo bundle).")
@click.option("--soak", "soak_clip", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Instead: the soak test, the monitor replaying this clip in a loop in real time for --minutes, "
                   "reporting memory growth, lag, latency and seq gaps (with the bundle of --demo-bundle).")
@click.option("--alarm-latency", is_flag=True,
              help="Instead: the latency from a frame's capture to the first sample `crashwatch alarm` hands to the "
                   "audio output, through a real monitor (--demo-bundle on the demo drive, looped), ZeroMQ and MQTT "
                   "(a Mosquitto started here), for --minutes.")
@click.option("--gpu-check", "gpu_configs", multiple=True, metavar="CONFIG",
              help="Instead: training steps of CONFIG (repeatable; e.g. smolvlm2-256m, smolvlm2-500m) on CUDA in bf16 "
                   "with gradient checkpointing (samples/s, peak memory) and its fp16 reference parity; on the CPU "
                   "where there is no GPU. Random weights. Needs the train extra.")
@click.option("--gpu-steps", type=click.IntRange(min=1), default=10, show_default=True,
              help="With --gpu-check: timed optimizer steps per config.")
@click.option("--explain", "explain_at", type=SECONDS, default=None, metavar="SECONDS",
              help="Instead: how long an alert's explanation takes on the --demo-bundle and each --bundle, for the "
                   "window ending at SECONDS of the demo drive (or of --replay-clip), alone and beside a scoring "
                   "loop.")
@click.option("--recording", "recording_clip", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Instead: what the loop recording costs on this clip (e.g. a real 720p dashcam clip), per codec at "
                   "1M, 2M (the default) and 4M bit/s: encoding time a frame, size an hour, hours the default ring "
                   "holds; no model.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="With --soak or --alarm-latency: how long.")
@click.option("--only-bundles", is_flag=True,
              help="Measure the --bundle bundles only (matmul probe, strides per runtime, floor, real-time replay), "
                   "without the research-way baselines and the demo-bundle replays (minutes instead of an hour).")
@click.option("--cameras", "cameras_bundle", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also: 1, 2, 4 and 8 cameras replayed in real time on this bundle, in one `monitor --config` "
                   "process against as many single-camera processes (strides per second, p99 latency, memory).")
@click.option("--replay-clip", "live_clip", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Replay this video (e.g. a real dashcam clip) in each bundle's real-time replay instead of a "
                   "generated 20 s one.")
@click.option("--camera-health", "health_clips", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Instead: the camera-health checks on every video in this folder, sound and with each fault "
                   "injected (black, frozen, covered, blurred, +3 stops, rotated): delays and false reports; no model.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Markdown file for the table, with the machine and this command [default: docs/benchmarks.md; "
                   "with --soak: a JSON report, none by default; with --camera-health: none by default].")
def bench_command(smoke: bool, bundles: tuple[tuple[str, Path], ...], demo_bundle: Path | None,
                  soak_clip: Path | None, alarm_latency: bool, gpu_configs: tuple[str, ...], gpu_steps: int,
                  explain_at: float | None, minutes: float, only_bundles: bool,
                  cameras_bundle: Path | None, live_clip: Path | None, health_clips: Path | None,
                  recording_clip: Path | None, out: Path | None) -> None:
    """Measure stride cost, speed-ups, latency, lag, memory and the CPU floor; print and write a table."""
    if gpu_configs:
        import torch

        from crashwatch.bench import gpu
        from crashwatch.bench.report import machine

        device = "cuda" if torch.cuda.is_available() else "cpu"
        name = torch.cuda.get_device_name(0) if device == "cuda" else "no GPU: on the CPU"
        runs = [gpu.training_steps(config, device, gpu_steps) for config in gpu_configs]
        references = [gpu.fp16_reference(config, device) for config in gpu_configs]
        _emit(gpu.table(runs, references, f"{name}; {machine()}; torch {torch.__version__}"), out)
        return
    if recording_clip is not None:
        from crashwatch.bench import recording
        from crashwatch.bench.report import machine

        _emit(recording.table(recording.measure(recording_clip), machine(), recording_clip), out)
        return
    if health_clips is not None:
        from crashwatch.bench.health import measure, table
        from crashwatch.bench.report import machine

        clips = sorted(p for p in health_clips.iterdir() if p.suffix.lower() in (".mp4", ".avi", ".mkv", ".mov"))
        if not clips:
            raise click.BadParameter(f"{health_clips}: no videos there", param_hint="--camera-health")
        _emit(table(measure(clips), machine()), out)
        return
    from crashwatch.demo import DEMO_DRIVE
    from crashwatch.demo import demo_bundle as shipped

    demo_bundle = demo_bundle or shipped()
    if explain_at is not None:
        from crashwatch.bench import explain
        from crashwatch.bench.report import machine

        clip = live_clip or DEMO_DRIVE
        rows = [explain.measure(name, path, clip, explain_at) for name, path in (("demo", demo_bundle), *bundles)]
        _emit(explain.table(rows, machine(), clip), out)
        return
    if alarm_latency:
        from crashwatch.bench import alarm
        from crashwatch.bench.report import machine

        soundings, output = alarm.measure(demo_bundle, DEMO_DRIVE, minutes)
        _emit(alarm.table(soundings, output, machine(), minutes), out)
        return
    if soak_clip is not None:
        from crashwatch.bench.soak import soak

        report = soak(demo_bundle, soak_clip, minutes, out)
        click.echo(report)
        return
    from crashwatch.bench.run import run

    out = out or Path("docs/benchmarks.md")
    table = run(smoke, dict(bundles), demo_bundle, out, "crashwatch " + " ".join(sys.argv[1:]), only_bundles,
                cameras_bundle, live_clip)
    click.echo(table.markdown())
    click.echo(f"wrote {out}")


def _emit(table: str, out: Path | None) -> None:
    """A measurement's table with the command that made it, printed and, where asked, written to ``out``."""
    text = table + f"\nCommand: `crashwatch {' '.join(sys.argv[1:])}`\n"
    click.echo(text)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}")


COMMANDS = (replay_eval_command, metrics_command, calibrate_command, bench_command, explain_command)
