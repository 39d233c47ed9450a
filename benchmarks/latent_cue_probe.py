"""Where is the audio-only cue lost? Probe the speaker latents of trained models.

For each stage-2 checkpoint, encode the test speakers as the denoiser sees them
(``ReactionModel.speaker_latents``: the frozen or the trainable speaker encoder) and fit the
world's question-vs-statement probe on the latents around phrase ends, scripts held out
(``reactdiff_lite.diagnostics.latent_cue_probe``); also on the models' own acoustic inputs
(40-band log-mel and MFCC-13, one vector per video frame). Compare with the probe on the
raw voice and face (``data.probe``: about 0.98 and 0.5 on the default world).

    python benchmarks/latent_cue_probe.py --data runs/ablate/data runs/ablate/mmt/seed0/stage2/best.pt ...
"""

from __future__ import annotations

import argparse
import json

from reactdiff_lite.data.cache import load_split
from reactdiff_lite.data.synthetic import item_cues, read_manifest
from reactdiff_lite.diagnostics import latent_cue_probe
from reactdiff_lite.latents import load_model, model_modalities
from reactdiff_lite.models.encoders import AudioFeatures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="stage-2 best.pt files")
    parser.add_argument("--data", required=True, help="the world the models were trained on")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    cues = item_cues(args.data, args.split)
    pairs = read_manifest(args.data)["splits"][args.split]["pairs"]
    script_of = {path: pair["script"] for pair in pairs for path in pair["paths"]}
    split = load_split(args.data, args.split, modalities=("emotion", "audio"))
    groups = [script_of[item.speaker] for item in split.items]
    log_mel, mfcc = AudioFeatures()(split.clip_tensor("audio", split.speaker_index))  # the models' own inputs
    results = {
        "model input: log-mel 40 (25 fps)": latent_cue_probe(log_mel.numpy(), cues, groups),
        "model input: MFCC 13 (25 fps)": latent_cue_probe(mfcc.numpy(), cues, groups),
    }
    print(json.dumps(results))
    for checkpoint in args.checkpoints:
        model = load_model(checkpoint, "cpu")
        split = load_split(args.data, args.split, modalities=model_modalities(model.autoencoder))
        latents = model.speaker_latents(split).numpy()  # (N, T, Dz)
        results[checkpoint] = {
            "speaker_encoder": model.config.stage2.speaker_encoder,
            "shuffle_audio": model.config.data.shuffle_audio,
            "latent_auc": latent_cue_probe(latents, cues, groups),
        }
        print(json.dumps({checkpoint: results[checkpoint]}))


if __name__ == "__main__":
    main()
