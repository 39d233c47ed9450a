"""Command line: ``python -m reactdiff_lite <command>``.

The commands and their flags are a stable contract (``overview.md``); each handler
lives in the module of its concept and is imported only when its command runs.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Sequence


def _handler(target: str):
    """``"pkg.module:function"`` -> a lazily imported command handler."""
    module, function = target.split(":")
    return lambda args: getattr(importlib.import_module(module), function)(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reactdiff_lite", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="generate or validate REACT-format data")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    synth = data_commands.add_parser("synth", help="write the synthetic dyadic world in REACT 2024 layout")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--preset", default="default", choices=["smoke", "default"])
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=_handler("reactdiff_lite.data.synthetic:cli_synth"))
    check = data_commands.add_parser("check", help="validate a REACT-format directory; JSON summary")
    check.add_argument("--root", required=True)
    check.add_argument("--split", default=None, help="one split (default: all present)")
    check.set_defaults(run=_handler("reactdiff_lite.data.react:cli_check"))

    train = commands.add_parser("train", help="train stage 1 (autoencoder) or stage 2 (latent diffusion)")
    train.add_argument("--config", required=True, help="YAML config, e.g. configs/stage1_default.yaml")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field, e.g. --set model.dim=128 (repeatable)")
    train.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    train.set_defaults(run=_handler("reactdiff_lite.train:cli_train"))

    sample = commands.add_parser("sample", help="generate K reactions per speaker")
    sample.add_argument("--checkpoint", required=True)
    sample.add_argument("--data", required=True)
    sample.add_argument("--split", default="test")
    sample.add_argument("--k", type=int, default=10)
    sample.add_argument("--out", required=True, help="predictions .npz")
    sample.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the config's)")
    sample.add_argument("--eta", type=float, default=None)
    sample.add_argument("--guidance", type=float, default=None)
    sample.add_argument("--online", action="store_true", help="REACT Task 2: window w sees speaker windows <= w")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="auto")
    sample.set_defaults(run=_handler("reactdiff_lite.sampling:cli_sample"))

    evaluate = commands.add_parser("evaluate", help="REACT metrics of predictions, optionally with baselines")
    evaluate.add_argument("--pred", required=True, help="predictions .npz from `sample`")
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--baselines", action="store_true", help="also evaluate every baseline")
    evaluate.set_defaults(run=_handler("reactdiff_lite.evaluation:cli_evaluate"))

    demo = commands.add_parser("demo", help="data -> stage 1 -> stage 2 -> sample -> evaluate, with figures")
    demo.add_argument("--preset", default="default", choices=["smoke", "default"])
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_handler("reactdiff_lite.demo:cli_demo"))

    ablate = commands.add_parser("ablate", help="ablation table: fusion, modalities, DDIM steps, guidance")
    ablate.add_argument("--preset", default="default", choices=["smoke", "default"])
    ablate.add_argument("--out", default="runs/ablate")
    ablate.add_argument("--seed", type=int, default=0)
    ablate.set_defaults(run=_handler("reactdiff_lite.demo:cli_ablate"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)
