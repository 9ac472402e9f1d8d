"""The ``crashwatch`` command: one click group, its commands split by part (``training``, ``monitor``,
``evaluation``, ``triton``, ``dashboard``), each its options and a few lines calling the library.

Commands import their heavy modules (torch, transformers) only when run, so that ``crashwatch --help`` is
quick and a monitor-only install (no torch) can run the monitor's commands.
"""

from __future__ import annotations

import logging
import traceback

import click

from crashwatch.cli import alarm, dashboard, doctor, evaluation, monitor, review, service, training, triton
from crashwatch.contract import __version__
from crashwatch.contract.errors import CrashwatchError

# What the `train` and `dashboard` extras bring: a command that needs one of these says so instead of a
# traceback. Module -> (the extra, what it is called).
EXTRAS = {**dict.fromkeys(("torch", "transformers", "accelerate", "peft", "safetensors", "num2words", "sklearn",
                           "matplotlib", "tqdm", "onnx", "onnxscript", "tokenizers"), ("train", "training")),
          **dict.fromkeys(("starlette", "uvicorn", "websockets"), ("dashboard", "dashboard"))}


class CrashwatchGroup(click.Group):
    """Turns a user error (``CrashwatchError``) raised anywhere below into one line and exit code 1, and so a
    command run where the extra it needs is not installed; with ``-vv`` the traceback is shown first."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except CrashwatchError as err:
            self._cause(ctx)
            raise click.ClickException(str(err)) from None
        except ModuleNotFoundError as err:
            missing = (err.name or "").split(".")[0]
            if missing not in EXTRAS:
                raise
            self._cause(ctx)
            extra, called = EXTRAS[missing]
            raise click.ClickException(
                f"`crashwatch {ctx.invoked_subcommand}` needs the {called} extra, and {missing} is not installed "
                f"here (the monitor-only install has the monitor's commands): pip install 'crashwatch[cpu,{extra}]', "
                f"or in a clone `pip install -c constraints.txt -e '.[cpu,{extra}]'`") from None

    @staticmethod
    def _cause(ctx: click.Context) -> None:
        if (ctx.obj or {}).get("verbose", 0) > 1:
            traceback.print_exc()


@click.group(cls=CrashwatchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="crashwatch")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug, and the cause of an error).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """crashwatch: a dashcam crash-risk monitor built on SmolVLM2.

    Train a classifier that answers "Is a vehicle collision likely to happen within 1 to 2 seconds?",
    evaluate it, export it to ONNX, and run the torch-free monitor on a webcam, a stream or a file.
    """
    ctx.obj = {"verbose": verbose}
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if verbose < 2:
        # The ONNX exporter's passes log a line per initializer and rewrite (9,000 for a streaming export).
        for noisy in ("httpx", "urllib3", "huggingface_hub", "filelock", "onnx_ir", "onnxscript"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


for part in (training, monitor, evaluation, triton, dashboard, service, doctor, alarm, review):
    for command in part.COMMANDS:
        main.add_command(command)
