"""The ``crashwatch`` command.

Subcommands import their heavy modules (torch, transformers) only when run, so that ``crashwatch --help``
is instant and a monitor-only install (no torch) can run the monitor's commands.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from crashwatch import __version__

log = logging.getLogger("crashwatch")


def _user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean a user mistake (bad file, bad config): shown as one clear message, no traceback.

    Errors of the torch-side modules are looked up, not imported: one can only have been raised if its module
    was loaded, and importing them would pull torch into the monitor's commands.
    """
    from monitor.bundle import BundleError
    from monitor.publisher import PublisherError
    from monitor.security import KeyFileError
    from monitor.source import SourceError
    from monitor.video import VideoError
    from train.config import ConfigError
    from train.data import DatasetError

    errors: list[type[Exception]] = [VideoError, ConfigError, DatasetError, BundleError, SourceError, PublisherError,
                                        KeyFileError]
    for module, name in (("train.checkpoint", "CheckpointError"), ("export.bundle", "ExportError")):
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


class CrashwatchGroup(click.Group):
    """Turns user errors raised anywhere below into a ClickException (message, exit code 1)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except Exception as err:
            if isinstance(err, _user_errors()):
                raise click.ClickException(str(err)) from None
            raise


@click.group(cls=CrashwatchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="crashwatch")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def main(verbose: int, quiet: bool) -> None:
    """crashwatch: a dashcam crash-risk monitor built on SmolVLM2.

    Train a classifier that answers "Is a vehicle collision likely to happen within 1 to 2 seconds?",
    evaluate it, export it to ONNX, and run the torch-free monitor on a webcam, a stream or a file.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if verbose < 2:
        for noisy in ("httpx", "urllib3", "huggingface_hub", "filelock"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


_existing_dir = click.Path(exists=True, file_okay=False, path_type=Path)
# Options the monitor, replay-eval and calibrate share: one definition, one help text.
_stride_option = click.option("--stride", type=float,
                              help="Seconds between risk queries (default: the window's frame spacing).")
_warning_window_option = click.option(
    "--warning-window", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
    help="Seconds before a collision in which an alert counts as its warning; earlier alerts are false alerts.")
_budget_option = click.option(
    "--false-alerts-per-hour", "budget", type=click.FloatRange(min=0), default=2.0, show_default=True,
    help="False-alert budget: of the alert thresholds with at most this many false alerts per hour of normal "
         "driving, the one warning the most crashes in time (the lowest of those) is picked.")


@main.command()
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="Run configuration YAML (see configs/).")
@click.option("--data", "data_dir", required=True, type=_existing_dir,
              help="Dataset folder: train/, val/ and train.jsonl, val.jsonl.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: the final checkpoint, and checkpoints/ for resuming.")
@click.option("--epochs", type=float, help="Override the config's number of epochs.")
@click.option("--max-steps", type=int, help="Stop after this many optimiser steps (smoke runs); 0 writes the model untrained (sizing, benchmarks).")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in OUT/checkpoints.")
@click.option("--random-init", is_flag=True, help="Build the config's architecture with random weights (no hub).")
@click.option("--tokenizer", help="Tokenizer to use instead of the config's (hub id, folder, or 'builtin').")
@click.option("--skip-bad", is_flag=True, help="Drop bad dataset lines with a warning instead of stopping.")
def train(config_path: Path, data_dir: Path, out_dir: Path, epochs: float | None, max_steps: int | None,
          resume: bool, random_init: bool, tokenizer: str | None, skip_bad: bool) -> None:
    """Fine-tune the crash-risk classifier on a dataset of clips."""
    from train.config import load_config
    from train.fit import train as run_training

    config = load_config(config_path)
    if random_init:
        if not config.backbone.architecture:
            raise click.UsageError(f"{config_path}: --random-init needs an `architecture` block in backbone")
        config.backbone.random_init = True
    if tokenizer:
        config.backbone.tokenizer = tokenizer
    if resume and not (out_dir / "checkpoints").is_dir():
        raise click.UsageError(f"--resume: {out_dir / 'checkpoints'} does not exist; nothing to resume")
    metrics = run_training(config, data_dir, out_dir, epochs=epochs, resume=resume, skip_bad=skip_bad,
                           max_steps=max_steps)
    click.echo(f"run written to {out_dir}; validation: accuracy {metrics['accuracy']:.3f}, "
               f"F1 {metrics['f1']:.3f}, AUROC {_fmt(metrics['auroc'])}, threshold {metrics['threshold']:.3f}")


@main.command("eval")
@click.option("--checkpoint", "checkpoint_dir", required=True, type=_existing_dir, help="Run folder from `crashwatch train`.")
@click.option("--data", "data_dir", required=True, type=_existing_dir, help="Dataset folder.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where predictions.csv, metrics.json and pr_curve.png go.")
@click.option("--skip-bad", is_flag=True, help="Drop bad dataset lines with a warning instead of stopping.")
def evaluate(checkpoint_dir: Path, data_dir: Path, split: str, out_dir: Path, skip_bad: bool) -> None:
    """Score every clip of a split and write predictions, metrics and a PR curve."""
    from train.evaluate import evaluate as run_eval

    m = run_eval(checkpoint_dir, data_dir, split, out_dir, skip_bad=skip_bad)
    cm = m["confusion_matrix"]["matrix"]
    click.echo(f"{split}: {m['count']} clips, accuracy {m['accuracy']:.3f}, F1 {m['f1']:.3f}, "
               f"AUROC {_fmt(m['auroc'])}, AP {_fmt(m['ap'])}, confusion [[TN FP] [FN TP]] = {cm}")
    for kind, k in m.get("by_kind", {}).items():
        click.echo(f"  {kind:<15} {k['clips']:>5} clips (label {k['label']}): mean probability {k['mean_probability']:.3f}, "
                   f"{k['at_or_above_threshold']:.0%} at or above the threshold, AUROC against the other label "
                   f"{_fmt(k['auroc_against_other_label'])}")
    click.echo(f"wrote {out_dir / 'predictions.csv'}, {out_dir / 'metrics.json'}, {out_dir / 'pr_curve.png'}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@main.command("export")
@click.option("--checkpoint", "checkpoint_dir", required=True, type=_existing_dir, help="Run folder from `crashwatch train`.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Bundle folder to write.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "fp16", "int8"]),
              help="fp32: reference; fp16: for CUDA/TensorRT; int8: dynamic quantization for CPUs.")
@click.option("--video", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A real clip whose last window checks the export against PyTorch (e.g. one from your test split).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def export_command(checkpoint_dir: Path, out_dir: Path, precision: str, video: Path, force: bool) -> None:
    """Export a checkpoint to an ONNX bundle the torch-free monitor runs."""
    from export.bundle import export_bundle

    manifest = export_bundle(checkpoint_dir, out_dir, precision, video, force=force)
    parity = manifest["parity"]
    size = sum(f["bytes"] for f in manifest["files"].values())
    click.echo(f"wrote {out_dir} ({precision}, {size / 1e6:.1f} MB); parity on {video.name}: embedding cosine "
               f"{parity['embedding_cosine']:.6f}, probability |diff| {parity['probability_abs_diff']:.2e}")


@main.command("monitor")
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path),
              help="Bundle folder from `crashwatch export` (default: the demo bundle, generated scenes only).")
@click.option("--source", required=True,
              help="Webcam index (0), rtsp:// or http(s):// URL, or a video file (replayed as a live stream).")
@click.option("--replay", type=click.Choice(["realtime", "fast"]), default="realtime", show_default=True,
              help="For files: at the file's frame rate, or as fast as inference allows without skipping a stride.")
@click.option("--loop", is_flag=True, help="For files: start again at the end (demos, soak tests).")
@_stride_option
@click.option("--pub", "endpoint", default="tcp://127.0.0.1:5555", show_default=True, help="ZeroMQ PUB endpoint to bind.")
@click.option("--camera", default="cam0", show_default=True, help="Camera name carried by every message.")
@click.option("--events", "events_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Save an event clip (+ JSON sidecar) per alert here.")
@click.option("--alert-on", type=float, help="Probability that starts an alert (default: the calibrated threshold).")
@click.option("--alert-off", type=float, help="Probability below which an alert ends (default: 0.1 below --alert-on).")
@click.option("--alert-min-on", type=float, default=0.0, show_default=True, help="Seconds above --alert-on before an alert starts.")
@click.option("--alert-min-off", type=float, default=1.0, show_default=True, help="Seconds below --alert-off before it ends.")
@click.option("--window-seconds", type=float, help="Override the bundle's window length (warned about: not what was trained).")
@click.option("--threads", type=int, help="onnxruntime threads (default: all cores).")
@click.option("--curve-secret", type=click.Path(dir_okay=False, path_type=Path),
              help="Encrypt with CURVE: the monitor's secret key file (from `crashwatch keys`).")
@click.option("--curve-allow", type=click.Path(file_okay=False, path_type=Path),
              help="With --curve-secret: folder of the public keys (*.key) of the subscribers admitted.")
def monitor_command(bundle_dir: Path, source: str, replay: str, loop: bool, stride: float | None, endpoint: str, camera: str,
                    events_dir: Path | None, alert_on: float | None, alert_off: float | None, alert_min_on: float,
                    alert_min_off: float, window_seconds: float | None, threads: int | None,
                    curve_secret: Path | None, curve_allow: Path | None) -> None:
    """Watch a camera, stream or file and publish risk, alerts and status over ZeroMQ."""
    import signal
    import threading

    from monitor.bundle import RiskModel
    from monitor.publisher import Publisher
    from monitor.run import Monitor, MonitorOptions
    from monitor.security import ServerCurve
    from monitor.source import parse_source

    if (curve_secret is None) != (curve_allow is None):
        raise click.UsageError("--curve-secret and --curve-allow go together")
    curve = ServerCurve(curve_secret, curve_allow) if curve_secret is not None else None
    spec = parse_source(source)
    if bundle_dir is None:
        from monitor.demo import NOTICE, demo_bundle

        bundle_dir = demo_bundle()
        click.echo(NOTICE, err=True)
    model = RiskModel(bundle_dir, threads=threads)
    alert = {"min_on_seconds": alert_min_on, "min_off_seconds": alert_min_off}
    if alert_on is not None:
        alert["on"] = alert_on
    if alert_off is not None:
        alert["off"] = alert_off
    options = MonitorOptions(source=spec, stride=stride, replay=replay, loop=loop, camera=camera, events_dir=events_dir,
                             alert=alert, window_seconds=window_seconds)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        monitor = Monitor(model, options, lambda status: Publisher(endpoint, camera, status=status, curve=curve),
                          stop=stop)
    except ValueError as err:  # inconsistent options (thresholds, overrides, fast replay of a live source)
        raise click.UsageError(str(err)) from None
    summary = monitor.run()
    if summary["source_state"] == "failed":
        raise click.ClickException(summary["source_error"] or f"{spec.display}: the source failed")
    click.echo(f"stopped: {summary['strides']} strides ({summary['strides_skipped']} skipped), "
               f"{summary['alerts']} alert(s), {summary['frames']} frames ({summary['frames_dropped']} dropped), "
               f"source {summary['source_state']}")


@main.command("demo")
@click.option("--out", "out_dir", default="demo-output", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the annotated video, the risk chart and event clips go.")
@click.option("--pub", "endpoint", default="tcp://127.0.0.1:5555", show_default=True, help="ZeroMQ PUB endpoint to bind.")
@click.option("--fast", is_flag=True, help="Replay as fast as inference allows instead of in real time.")
def demo_command(out_dir: Path, endpoint: str, fast: bool) -> None:
    """Run the monitor on the shipped demo drive in real time, printing risk and alerts as they come."""
    import signal
    import threading

    from monitor.bundle import RiskModel
    from monitor.demo import DEMO_DRIVE, NOTICE, demo_bundle, write_report
    from monitor.replay_eval import WARNING_WINDOW
    from monitor.publisher import Publisher
    from monitor.run import Monitor, MonitorOptions
    from monitor.source import SourceSpec
    from monitor.subscribe import Subscriber, describe

    model = RiskModel(demo_bundle())
    click.echo(NOTICE)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    options = MonitorOptions(source=SourceSpec("file", str(DEMO_DRIVE), DEMO_DRIVE.name), camera="demo",
                             events_dir=out_dir / "events", replay="fast" if fast else "realtime")
    subscriber = Subscriber(endpoint)
    monitor = Monitor(model, options, lambda status: Publisher(endpoint, "demo", status=status), stop=stop)
    if subscriber.receive(timeout=3) is None:  # the first heartbeat: the subscription is live
        raise click.ClickException(f"{endpoint}: the subscriber received nothing from the monitor")

    def show() -> None:
        while True:
            item = subscriber.receive(timeout=0.2)
            if item is None:
                if finished.is_set():  # the monitor has stopped and nothing more is coming
                    return
            elif item[0] in ("risk", "alert"):
                click.echo(describe(*item))

    finished = threading.Event()
    printer = threading.Thread(target=show, daemon=True)
    click.echo(f"replaying {DEMO_DRIVE.name} {'fast' if fast else 'in real time'}; risk every {monitor.stride:.1f} s "
               "of video (Ctrl-C stops)")
    printer.start()
    monitor.run()
    finished.set()
    printer.join(timeout=2)
    subscriber.close()
    report = write_report(out_dir, monitor.risks, monitor.alerts, monitor.policy.on)
    if report["warning_s"] is not None:
        click.echo(f"the alert came {report['warning_s']:.1f} s before the collision at {report['event_time']:.1f} s")
    elif report["event_time"] is not None and not stop.is_set():
        click.echo(f"no alert in the {WARNING_WINDOW:.0f} s before the collision at {report['event_time']:.1f} s")
    click.echo(f"false alerts before that: {report['false_alerts']}")
    click.echo(f"annotated video: {report['video']}")
    click.echo(f"risk chart:      {report['chart']}")


@main.command("bench")
@click.option("--smoke", is_flag=True, help="Seconds-long run of every measurement with small inputs (make test).")
@click.option("--bundle", "bundles", multiple=True, type=(str, click.Path(exists=True, file_okay=False, path_type=Path)),
              help="NAME BUNDLE to measure per stride (repeatable); e.g. smolvlm2-256m bundles/256m-int8. Naming a "
                   "config (smolvlm2-256m, smolvlm2-500m) also compares it with the research code's way.")
@click.option("--demo-bundle", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Bundle for the latency and lag replay (default: the shipped demo bundle).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("BENCHMARKS.md"), show_default=True,
              help="Markdown file for the table, with the machine and this command.")
def bench_command(smoke: bool, bundles: tuple[tuple[str, Path], ...], demo_bundle: Path | None, out: Path) -> None:
    """Measure stride cost, speed-ups, latency, lag, memory and the CPU floor; print and write a table."""
    from benchmarks.bench import run

    if demo_bundle is None:
        from monitor.demo import demo_bundle as shipped

        demo_bundle = shipped()
    table = run(smoke, dict(bundles), demo_bundle, out, "crashwatch " + " ".join(sys.argv[1:]))
    click.echo(table.markdown())
    click.echo(f"wrote {out}")


@main.command("subscribe")
@click.option("--connect", "endpoint", default="tcp://127.0.0.1:5555", show_default=True, help="Monitor's PUB endpoint.")
@click.option("--topic", "topics", multiple=True, type=click.Choice(["risk", "alert", "status"]),
              help="Only these topics (repeatable; default: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for programs.")
@click.option("--count", type=int, help="Exit after this many messages.")
@click.option("--curve-server-key", type=click.Path(dir_okay=False, path_type=Path),
              help="The monitor's public key file: connect with CURVE encryption.")
@click.option("--curve-secret", type=click.Path(dir_okay=False, path_type=Path),
              help="With --curve-server-key: this subscriber's secret key file.")
def subscribe_command(endpoint: str, topics: tuple[str, ...], as_json: bool, count: int | None,
                      curve_server_key: Path | None, curve_secret: Path | None) -> None:
    """Print a monitor's messages, one line each."""
    import json

    from monitor.security import ClientCurve
    from monitor.subscribe import Subscriber, describe

    if (curve_server_key is None) != (curve_secret is None):
        raise click.UsageError("--curve-server-key and --curve-secret go together")
    curve = ClientCurve(curve_server_key, curve_secret) if curve_secret is not None else None
    subscriber = Subscriber(endpoint, topics, curve=curve)
    received = 0
    try:
        for topic, message in subscriber:
            click.echo(json.dumps({"topic": topic, **message}) if as_json else describe(topic, message))
            received += 1
            if count is not None and received >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        subscriber.close()
        if subscriber.gaps:
            click.echo(f"missed messages (seq gaps): {subscriber.gaps}", err=True)


@main.command("replay-eval")
@click.option("--bundle", "bundle_dir", required=True, type=click.Path(path_type=Path), help="Bundle folder.")
@click.option("--data", "data_dir", required=True, type=_existing_dir, help="Dataset folder (research layout).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where replay_eval.csv, replay_eval.json, plots/ and traces/ go.")
@_stride_option
@click.option("--alert-on", type=float, help="Probability that starts an alert (default: the calibrated threshold).")
@click.option("--skip-bad", is_flag=True, help="Drop bad dataset lines with a warning instead of stopping.")
@_warning_window_option
@_budget_option
def replay_eval_command(bundle_dir: Path, data_dir: Path, split: str, out_dir: Path, stride: float | None,
                        alert_on: float | None, skip_bad: bool, warning_window: float, budget: float) -> None:
    """Replay every clip of a split through the monitor and report alerts, time-to-accident, false alerts,
    and the operating curve over other alert thresholds."""
    s = _replay(bundle_dir, data_dir, split, out_dir, stride, alert_on, skip_bad, warning_window, budget)
    pick = s["within_budget"]
    click.echo(f"operating curve: {out_dir / 'operating_curve.csv'}; " + (
        f"best within {budget:g} false alerts/h: threshold {pick['threshold']:.2f}: {_scored(pick)}" if pick
        else f"no threshold keeps false alerts within {budget:g}/h"))


@main.command("calibrate")
@click.option("--bundle", "bundle_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Bundle folder whose alert threshold is set.")
@click.option("--data", "data_dir", required=True, type=_existing_dir,
              help="Dataset folder of drives (research layout) NOT used for testing: e.g. `crashwatch synth "
                   "--drives` of a seed used for neither training nor testing, or your own recorded driving.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where the replay report and operating curve go.")
@_budget_option
@_stride_option
@_warning_window_option
def calibrate_command(bundle_dir: Path, data_dir: Path, split: str, out_dir: Path, budget: float,
                      stride: float | None, warning_window: float) -> None:
    """Set a bundle's alert threshold for a false-alert budget: replay drives through the monitor, and keep,
    of the thresholds whose false alerts per hour stay within the budget, the one warning the most crashes
    in time (the lowest of those: the earliest warnings).

    The validation threshold a run calibrates (best F1 on clip-end windows) says nothing about how often a
    stream alerts; this does. Calibrate on drives the test never sees, then measure with replay-eval."""
    from monitor.bundle import set_threshold
    from monitor.replay_eval import CURVE_THRESHOLDS

    s = _replay(bundle_dir, data_dir, split, out_dir, stride, None, False, warning_window, budget)
    pick = s["within_budget"]
    if pick is None:
        raise click.ClickException(f"{data_dir}: no threshold up to {CURVE_THRESHOLDS[-1]} keeps false alerts within {budget:g} "
                                   f"per hour (see {out_dir / 'operating_curve.csv'}); the bundle is unchanged")
    set_threshold(bundle_dir, pick["threshold"], {
        "data": str(data_dir), "split": split, "false_alerts_per_hour_budget": budget, "warning_window_s": warning_window,
        "normal_hours": round(s["normal_hours"], 3), **{k: pick[k] for k in ("alerted_before_collision_rate",
                                                                              "median_time_to_accident_s",
                                                                              "false_alerts_per_hour")}})
    click.echo(f"{bundle_dir}: alert threshold {pick['threshold']:.2f} (was {s['threshold']:.3f}): {_scored(pick)}")


def _replay(bundle_dir: Path, data_dir: Path, split: str, out_dir: Path, stride: float | None, alert_on: float | None,
            skip_bad: bool, warning_window: float, budget: float) -> dict:
    """replay-eval's run and its printed summary, shared with calibrate."""
    from monitor.replay_eval import replay_eval

    s = replay_eval(bundle_dir, data_dir, split, out_dir, stride, {} if alert_on is None else {"on": alert_on}, skip_bad,
                    warning_window, budget)
    click.echo(f"{s['clips']} clips at threshold {s['threshold']:.3f}: crash clips alerted "
               f"{s['crash_clips_alerted']}/{s['crash_clips']}; {_scored(s)}")
    if s.get("false_alerts_by_segment"):
        click.echo("false alerts by what was on screen as they started: "
                   + ", ".join(f"{kind} {count}" for kind, count in s["false_alerts_by_segment"].items()))
    click.echo(f"wrote {out_dir / 'replay_eval.csv'}, {out_dir / 'replay_eval.json'}, {out_dir / 'plots'}/ and "
               f"{out_dir / 'traces'}/")
    return s


def _scored(s: dict) -> str:
    rate = "" if s["alerted_before_collision_rate"] is None else f" ({s['alerted_before_collision_rate']:.0%})"
    tta = s["median_time_to_accident_s"]
    per_hour = s["false_alerts_per_hour"]
    return (f"warned before the collision {s['alerted_before_collision']}/{s['crash_clips_with_event_time']}{rate}, "
            f"median time-to-accident {'n/a' if tta is None else f'{tta:.2f} s'}; false alerts {s['false_alerts']} "
            f"({'n/a' if per_hour is None else f'{per_hour:.1f}'}/h of normal driving)")


@main.command("keys")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the key files.")
@click.option("--name", required=True, help="Whose keys: e.g. the monitor's or a subscriber's name.")
def keys_command(out_dir: Path, name: str) -> None:
    """Create a CURVE key pair: NAME.key (public) and NAME.key_secret (private)."""
    from monitor.security import create_keys

    public, secret = create_keys(out_dir, name)
    click.echo(f"wrote {public} (public: give it to the other side) and {secret} (secret: keep it here)")


@main.command("synth")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to write (train/ val/ test/ + JSONL, and drives/ with --drives).")
@click.option("--clips", default=200, show_default=True, help="Number of clips (split 70/15/15).")
@click.option("--seed", default=0, show_default=True, help="Seed: the same seed writes the same data.")
@click.option("--drives", default=0, show_default=True, help="Long continuous drives for replay-eval, in OUT/drives.")
@click.option("--drive-minutes", default=3.0, show_default=True, help="Length of each drive.")
@click.option("--demo-drive", is_flag=True, help="Write only the demo's drive (drive.mp4 + drive.json) into OUT.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes rendering clips (default: one per CPU); the files are the same whatever the number.")
def synth_command(out_dir: Path, clips: int, seed: int, drives: int, drive_minutes: float, demo_drive: bool,
                  workers: int | None) -> None:
    """Render labelled dashcam scenarios (collisions, near misses, normal driving) with exact ground truth."""
    from train.synth.generate import generate, write_demo_drive

    if demo_drive:
        truth = write_demo_drive(out_dir, seed)
        click.echo(f"wrote {out_dir / 'drive.mp4'}: {truth['duration_s']:.0f} s, collision at {truth['event_time']:.1f} s")
        return
    generate(out_dir, clips, seed, drives, drive_minutes, workers=workers or os.cpu_count() or 1)
    click.echo(f"wrote {out_dir}" + (f" and {out_dir / 'drives'}" if drives else ""))


@main.group()
def dataset() -> None:
    """Build and check datasets in the research layout."""


@dataset.command("index")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Dataset folder to write: train/ val/ test/ and their .jsonl files.")
@click.option("--split", "fractions", default="0.7,0.15,0.15", show_default=True,
              help="Fractions for train,val,test (stratified by label).")
@click.option("--seed", default=0, show_default=True, help="Seed of the split.")
@click.option("--question", default=None, help="Question text for every line (default: the research question).")
@click.option("--link", is_flag=True, help="Hard-link videos instead of copying them.")
@click.option("--skip-bad", is_flag=True, help="Leave out bad rows and videos with a warning instead of stopping.")
def dataset_index(source: Path, out_dir: Path, fractions: str, seed: int, question: str | None, link: bool,
                  skip_bad: bool) -> None:
    """Write the JSONL files from labelled videos.

    SOURCE is a folder with positive/ and negative/ subfolders, or a CSV with columns video (or file),
    label and optionally event_time (or event_time_s), paths relative to the CSV.
    """
    from train.config import DEFAULT_QUESTION
    from train.data import DatasetError
    from train.index import check_videos, from_csv, from_folders, write_dataset

    try:
        parts = tuple(float(x) for x in fractions.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise click.BadParameter(f"{fractions!r}: give three non-negative fractions summing to 1", param_hint="--split")
    if source.is_dir():
        videos, problems = from_folders(source), []
    else:
        videos, problems = from_csv(source)
    videos = check_videos(videos, problems)
    if problems:
        listing = "\n  ".join(str(p) for p in problems)
        if not skip_bad:
            raise DatasetError(f"{source}: {len(problems)} problem(s) (use --skip-bad to leave them out):\n  {listing}")
        log.warning("leaving out %d video(s):\n  %s", len(problems), listing)
    if not videos:
        raise DatasetError(f"{source}: no usable videos")
    counts = write_dataset(videos, out_dir, question or DEFAULT_QUESTION, parts, seed, link)
    click.echo(f"wrote {out_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " clips")
