"""Checkpoints every stage shares: named state dicts + the config as a plain dict.

A checkpoint file is a ``torch.save``d dict::

    {"format": "reactdiff-lite/2",
     "config": {name: {...}, ...},        # one config per model part (plain values), each stored once
     "modules": {name: state_dict, ...},  # every trained part, by name
     "extra": {...}}                      # step, metrics, optimiser state, ... (plain values, tensors)

It holds *every* trained part by name (the official ReactDiff code forgets to save its
speaker-condition projection). A training checkpoint's ``config`` is the run's
``TrainConfig`` as a plain dict (``config.stage_dict``): its ``autoencoder`` and
``diffusion`` sections are the model configs, so each is stored once.

Formats: ``reactdiff-lite/2`` (current) fused the attention layers' state-dict layout and
renamed the ``train`` config section to ``optim``; a ``reactdiff-lite/1`` file is refused
with a message saying to retrain. It is written atomically and read with
``torch.load(weights_only=True)``, so loading never runs pickled code. A state dict that
does not fit the module built from the config raises ``CheckpointError`` naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reactdiff_lite.config import ConfigError, from_dict
from reactdiff_lite.utils import UserError, atomic_torch_save

FORMAT = "reactdiff-lite/2"
OLD_FORMATS = ("reactdiff-lite/1",)


class CheckpointError(UserError):
    """A checkpoint file that is unreadable or does not match its config / modules."""


def save_checkpoint(
    path: str | Path, modules: Mapping[str, nn.Module], config: Mapping[str, Any], **extra: Any
) -> Path:
    """Write ``modules``' state dicts, ``config`` and ``extra`` to ``path`` atomically.

    Args:
        path: the ``.pt`` file to write (parent folders are created).
        modules: ``{name: module}``, e.g. ``{"autoencoder": ae, "diffusion": net}``.
        config: ``{name: plain config}`` (``config.to_dict``), or a run's ``config.stage_dict``.
        extra: more plain values to keep, e.g. ``step=1000``.
    """
    payload = {
        "format": FORMAT,
        "config": dict(config),
        "extra": dict(extra),
        "modules": {name: m.state_dict() for name, m in modules.items()},
    }
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint file with ``weights_only=True``; returns its dict (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist: check the path, or train one first "
            "(python -m reactdiff_lite train --config ...)"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(
            f"checkpoint {path} cannot be read: it is corrupt, truncated or not a reactdiff-lite "
            "checkpoint (it is loaded with weights_only=True, so no pickled code runs); "
            "retrain it or pass another file (--debug shows the loader's message)"
        ) from err
    found = payload.get("format") if isinstance(payload, dict) else None
    if found in OLD_FORMATS:
        raise CheckpointError(
            f"checkpoint {path} has the older format {found!r} (this version reads {FORMAT!r}): "
            "retrain it with this version (python -m reactdiff_lite train --config ...)"
        )
    if not isinstance(payload, dict) or found != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} checkpoint (format: {found!r})")
    return payload


def load_modules(path: str | Path, modules: Mapping[str, nn.Module], payload: dict[str, Any] | None = None) -> None:
    """Load the state dicts stored under ``modules``' names into them, strictly.

    Args:
        path: the checkpoint file (read here unless ``payload`` is given; named in errors).
        modules: ``{name: module}`` built from the checkpoint's config.
        payload: what ``read_checkpoint(path)`` returned, to avoid reading twice.
    """
    payload = read_checkpoint(path) if payload is None else payload
    stored = payload["modules"]
    for name, module in modules.items():
        if name not in stored:
            raise CheckpointError(f"checkpoint {path} has no module {name!r} (it holds {sorted(stored)})")
        problems = state_dict_mismatch(module, stored[name])
        if problems:
            raise CheckpointError(f"checkpoint {path}: module {name!r} does not match its config: {problems}")
        module.load_state_dict(stored[name], strict=True)


def load_model(
    path: str | Path,
    name: str,
    config_type: Any,
    build: Any,
    config: Any = None,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Rebuild the module stored under ``name``; returns ``(module in eval mode, config, extra)``.

    Args:
        path: the checkpoint file.
        name: the module's name in the file, e.g. ``"autoencoder"``.
        config_type: its config dataclass (read with ``config.from_dict``).
        build: ``build(config) -> nn.Module``.
        config: build from this config instead of the stored one; weights that do not fit
            it raise ``CheckpointError`` naming the file.
        map_location: device for the loaded tensors.
    """
    payload = read_checkpoint(path, map_location)
    if config is None:
        if name not in payload["config"]:
            raise CheckpointError(f"checkpoint {path} has no {name!r} config (it holds {sorted(payload['config'])})")
        try:
            config = from_dict(config_type, payload["config"][name], f"checkpoint {path}: {name}")
        except ConfigError as err:
            raise CheckpointError(f"checkpoint {path}: bad {name} config: {err}") from err
    model = build(config)
    load_modules(path, {name: model}, payload)
    return model.to(map_location).eval(), config, payload["extra"]


def state_dict_mismatch(module: nn.Module, state: Mapping[str, torch.Tensor], show: int = 3) -> str:
    """A one-line summary of how ``state`` fails to fit ``module`` ("" when it fits)."""
    own = module.state_dict()
    groups = {
        "shape mismatch": [
            f"{k} {tuple(state[k].shape)} in file vs {tuple(v.shape)} in model"
            for k, v in own.items()
            if k in state and state[k].shape != v.shape
        ],
        "missing key": [k for k in own if k not in state],
        "unexpected key": [k for k in state if k not in own],
    }
    return "; ".join(
        f"{len(items)} {kind}(s), e.g. {', '.join(items[:show])}" for kind, items in groups.items() if items
    )
