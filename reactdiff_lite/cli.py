"""Command line: ``python -m reactdiff_lite <command>``.

The commands and their flags are a stable contract (README, ``docs/architecture.md``);
each handler lives in the module of its concept and is imported only when its command
runs. A handler raises on a problem the user can fix (``utils.UserError``, or an
``OSError`` for a path); ``main`` prints it as one line
``reactdiff_lite <command>: error: <message>`` on stderr and exits 2. ``--debug``
shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

EXIT_USER_ERROR = 2  # argparse's status for a bad command line, so for every user error
PRESETS = ["smoke", "default"]
SET_HELP = (
    "override a config field, e.g. --set optim.steps=200 (repeatable); sections: data, optim, run, "
    "autoencoder (stage 1), diffusion, stage2, sample (stage 2)"
)


def _handler(target: str):
    """``"pkg.module:function"`` -> a lazily imported command handler."""
    module, function = target.split(":")
    return lambda args: getattr(importlib.import_module(module), function)(args)


def _debug_flag(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--debug", action="store_true", default=default, help="on an error, show the traceback")


def _command(commands, name: str, handler: str, help: str) -> argparse.ArgumentParser:
    """A subcommand that runs ``handler`` (``"module:function"``) and takes ``--debug`` after its name too."""
    debug = argparse.ArgumentParser(add_help=False)
    _debug_flag(debug, argparse.SUPPRESS)  # SUPPRESS: when not given here, the global flag stands
    parser = commands.add_parser(name, help=help, parents=[debug])
    parser.set_defaults(run=_handler(handler))
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reactdiff_lite",
        description="ReactDiff-lite: data, two-stage training, sampling and REACT evaluation.",
        epilog="A user error prints one line and exits 2; --debug shows the traceback.",
    )
    _debug_flag(parser, False)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="generate or validate REACT-format data")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    synth = _command(
        data_commands,
        "synth",
        "reactdiff_lite.data.synthetic:cli_synth",
        "write the synthetic dyadic world in REACT 2024 layout",
    )
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--preset", default="default", choices=PRESETS)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--no-cues", dest="cues", action="store_false", help="leave out speech acts and accents")
    synth.add_argument("--rho", type=float, default=None, help="cue leakage onto the speaker's face (default 0)")
    check = _command(
        data_commands,
        "check",
        "reactdiff_lite.data.checks:cli_check",
        "validate a REACT-format directory; JSON summary",
    )
    check.add_argument("--root", required=True)
    check.add_argument("--split", default=None, help="one split (default: all present)")

    train = _command(
        commands, "train", "reactdiff_lite.train:cli_train", "train stage 1 (autoencoder) or stage 2 (latent diffusion)"
    )
    train.add_argument("--config", required=True, help="YAML config, e.g. configs/stage1_default.yaml")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    train.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")

    sample = _command(commands, "sample", "reactdiff_lite.sampling:cli_sample", "generate K reactions per speaker")
    sample.add_argument("--checkpoint", required=True, help="a stage-2 checkpoint, e.g. runs/demo/stage2/best.pt")
    sample.add_argument("--data", required=True)
    sample.add_argument("--split", default="test")
    sample.add_argument("--k", type=int, default=10)
    sample.add_argument("--out", required=True, help="predictions .npz")
    sample.add_argument("--steps", type=int, default=None, help="sampler steps (default: the config's)")
    sample.add_argument("--eta", type=float, default=None)
    sample.add_argument("--guidance", type=float, default=None)
    sample.add_argument("--online", action="store_true", help="REACT Task 2: window w sees speaker windows <= w")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="auto")

    evaluate = _command(
        commands,
        "evaluate",
        "reactdiff_lite.evaluation:cli_evaluate",
        "REACT metrics of predictions, optionally with baselines",
    )
    evaluate.add_argument("--pred", required=True, help="predictions .npz from `sample`")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--baselines", action="store_true", help="also evaluate every baseline")

    demo = _command(
        commands,
        "demo",
        "reactdiff_lite.demo:cli_demo",
        "data -> stage 1 -> stage 2 -> sample -> evaluate, with figures",
    )
    ablate = _command(
        commands,
        "ablate",
        "reactdiff_lite.ablate:cli_ablate",
        "controlled ablations (fusion, audio controls) with training seeds and paired CIs",
    )
    ablate.add_argument("--seeds", type=int, default=3, help="training seeds of the key variants (others: 1)")
    ablate.add_argument("--variants", nargs="+", help="a subset of the variants (default: all)")
    select = _command(
        commands,
        "select",
        "reactdiff_lite.selection:cli_select",
        "the validation record: every tuned option scored on val against the default",
    )
    select.add_argument("--base", help="a finished run of the same preset and seed to reuse (e.g. runs/demo)")
    select.add_argument("--groups", nargs="+", help="a subset of the option groups (default: all)")
    compare = _command(
        commands,
        "compare",
        "reactdiff_lite.compare:cli_compare",
        "ReactDiff vs learned competitors (Regression, Trans-VAE, official recipe; offline and online) and baselines",
    )
    compare.add_argument("--seeds", type=int, default=3, help="training seeds of every learned competitor")
    compare.add_argument("--competitors", nargs="+", help="a subset of the learned competitors (default: all)")
    for command, out in (
        (demo, "runs/demo"),
        (ablate, "runs/ablate"),
        (select, "runs/select"),
        (compare, "runs/compare"),
    ):
        command.add_argument("--preset", default="default", choices=PRESETS)
        command.add_argument("--out", default=out)
        command.add_argument("--seed", type=int, default=0, help="the world's seed (demo: also training's)")
    return parser


def error_line(command: str, err: BaseException) -> str:
    """``reactdiff_lite <command>: error: <first line of the message>`` (the rest: ``--debug``)."""
    lines = str(err).strip().splitlines() or [type(err).__name__]
    more = f" (+{len(lines) - 1} more lines: rerun with --debug)" if len(lines) > 1 else ""
    return f"reactdiff_lite {command}: error: {lines[0].strip()}{more}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; -> its exit status (0 ok, 2 a user error, printed as one line)."""
    args = build_parser().parse_args(argv)
    from reactdiff_lite.utils import UserError  # after parsing: `--help` does not wait for torch

    command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
    try:
        return int(args.run(args) or 0)
    except (UserError, OSError) as err:
        if args.debug:
            raise
        print(error_line(command, err), file=sys.stderr)
        return EXIT_USER_ERROR
