"""Commands that put a bundle on NVIDIA Triton: ``export-triton`` (a model repository for NVIDIA's container) and
``serve-triton`` (Triton's server from the nvidia-pytriton wheel, for machines without the container)."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from crashwatch.cli.options import existing_dir

PORT = click.IntRange(1, 65535)


def repository_options(command):
    """The options the exported repository and the served one share: names, batching, instances."""
    for option in reversed((
        click.option("--bundle", "bundle_dir", required=True, type=existing_dir,
                     help="Bundle folder from `crashwatch export`."),
        click.option("--name", default="crashwatch", show_default=True,
                     help="Model name: the models are NAME_vision, NAME_head and NAME_bundle; monitors take "
                          "--model triton://HOST:PORT/NAME."),
        click.option("--max-batch", type=click.IntRange(1, 1024), default=8, show_default=True,
                     help="max_batch_size of the two graphs: frames or windows Triton runs in one call."),
        click.option("--queue-delay-us", type=click.IntRange(0, 10_000_000), default=2000, show_default=True,
                     help="How long Triton's dynamic batcher holds a request for others to join it (fp32 and fp16 "
                          "bundles; int8 ones are not batched across requests, see docs/fleet.md)."),
        click.option("--instances", type=click.IntRange(1, 64), default=1, show_default=True,
                     help="Instances of each graph model (each holds its own copy of the graph)."),
    )):
        command = option(command)
    return command


def _options(name: str, max_batch: int, queue_delay_us: int, instances: int, gpu: bool = False):
    from crashwatch.monitor.serving.triton.repository import RepositoryOptions

    return RepositoryOptions(name=name, max_batch=max_batch, queue_delay_us=queue_delay_us, instances=instances,
                             gpu=gpu)


@click.command("export-triton")
@repository_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model repository to write (served unchanged by `tritonserver --model-repository OUT`).")
@click.option("--gpu", is_flag=True, help="Graph instances on GPUs (KIND_GPU) instead of CPUs (KIND_CPU).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def export_triton_command(bundle_dir: Path, name: str, max_batch: int, queue_delay_us: int, instances: int,
                          out_dir: Path, gpu: bool, force: bool) -> None:
    """Write a Triton model repository for a bundle: its graphs on Triton's onnxruntime backend and its manifest
    and prompt arrays on the Python backend."""
    from crashwatch.monitor.serving.triton.repository import write_repository

    options = _options(name, max_batch, queue_delay_us, instances, gpu)
    if force and out_dir.exists():
        shutil.rmtree(out_dir)
    manifest = write_repository(bundle_dir, out_dir, options)
    batching = ("no dynamic batching (int8: results would depend on the batch)" if manifest.precision == "int8"
                else f"dynamic batching up to {max_batch}, {queue_delay_us} us queue delay")
    click.echo(f"wrote {out_dir}: {name}_vision, {name}_head, {name}_bundle ({manifest.precision}, {batching}, "
               f"{instances} {'GPU' if gpu else 'CPU'} instance(s) a graph); serve it with "
               f"`tritonserver --model-repository {out_dir}`, monitor with --model triton://HOST:8001/{name}")


@click.command("serve-triton")
@repository_options
@click.option("--port", required=True, type=PORT, help="gRPC port (what monitors connect to).")
@click.option("--http-port", type=PORT, help="Also serve Triton's HTTP endpoint on this port.")
@click.option("--metrics-port", type=PORT, help="Also serve Triton's Prometheus metrics on this port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (beyond loopback is warned about: Triton has no authentication here).")
def serve_triton_command(bundle_dir: Path, name: str, max_batch: int, queue_delay_us: int, instances: int, port: int,
                         http_port: int | None, metrics_port: int | None, host: str) -> None:
    """Serve a bundle with Triton's own server from the nvidia-pytriton wheel (no container needed): the same
    models, inputs and outputs as `export-triton`'s repository, the graphs run by onnxruntime in Python models."""
    from crashwatch.monitor.serving.signals import stop_on_signals
    from crashwatch.monitor.serving.triton.server import Ports, serve

    ports = [p for p in (port, http_port, metrics_port) if p is not None]
    if len(set(ports)) != len(ports):
        raise click.UsageError("--port, --http-port and --metrics-port must differ")
    code = serve(bundle_dir, _options(name, max_batch, queue_delay_us, instances),
                 Ports(port, http_port, metrics_port, host), stop_on_signals())
    if code:
        raise click.ClickException(f"tritonserver exited with code {code} (its log is above)")
    click.echo("stopped")


COMMANDS = (export_triton_command, serve_triton_command)
