"""The data layer: the dyadic-world generator, its oracle, the REACT reader, the renderer and face plots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from reactdiff_lite.data import checks, oracle, people, reader, synthetic
from reactdiff_lite.data.cache import load_split
from reactdiff_lite.data.checks import check
from reactdiff_lite.data.reader import DataError, read_items
from reactdiff_lite.plots import animate, face_strip
from reactdiff_lite.render import render_faces
from reactdiff_lite.schema import (
    AU,
    AU_NAMES,
    AUDIO_RATE,
    EMOTION_DIM,
    FE,
    FPS,
    SAMPLES_PER_FRAME,
    SPLITS,
    TDMM_DIM,
    TDMM_ROT,
    VA,
)
from reactdiff_lite.utils import UserError

ROOT = Path(__file__).resolve().parents[1]
SMOKE_FRAMES = synthetic.PRESETS["smoke"].clip_frames  # 151


def _files(root: Path, suffixes=(".csv", ".npy")) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.suffix in suffixes and ".cache" not in p.parts
    }


def _ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Concordance correlation averaged over dimensions; (T, D) inputs."""
    mx, my, vx, vy = x.mean(0), y.mean(0), x.var(0), y.var(0)
    cov = ((x - mx) * (y - my)).mean(0)
    return float((2 * cov / (vx + vy + (mx - my) ** 2 + 1e-8)).mean())


@pytest.fixture
def broken(smoke_data, tmp_path) -> Path:
    """A private copy of the smoke dataset to break."""
    return Path(shutil.copytree(smoke_data, tmp_path / "data", ignore=shutil.ignore_patterns(".cache")))


# ---------------------------------------------------------------------------- generator
def test_same_seed_gives_identical_files(smoke_data, tmp_path):
    again = synthetic.ensure_dataset(tmp_path / "again", "smoke", 0)
    first, second = _files(smoke_data), _files(again)
    assert len(first) > 40 and first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_ensure_dataset_reuses_a_matching_dataset(smoke_data):
    manifest = smoke_data / "manifest.json"
    before = manifest.stat().st_mtime_ns
    assert synthetic.ensure_dataset(smoke_data, "smoke", 0) == smoke_data
    assert manifest.stat().st_mtime_ns == before


def test_file_formats(smoke_data):
    for split in SPLITS:
        items = read_items(smoke_data, split)
        M = len(items) // 2
        assert (smoke_data / f"{split}.csv").read_text().splitlines()[0] == ",speaker_path,listener_path"
        clips = {it.speaker for it in items}
        assert len(clips) == 2 * M
        for clip in clips:
            files = reader.clip_files(smoke_data, split, clip)
            assert all(files.values()), files
            e = reader.read_emotion(files["emotion"])
            assert e.shape == (SMOKE_FRAMES, EMOTION_DIM)
            assert set(np.unique(e[:, AU])) <= {0.0, 1.0}
            assert e[:, VA].min() >= -1 and e[:, VA].max() <= 1
            np.testing.assert_allclose(e[:, FE].sum(1), 1.0, atol=1e-4)
            tdmm = np.load(files["tdmm"])
            assert tdmm.shape == (SMOKE_FRAMES, 1, TDMM_DIM) and tdmm.dtype == np.float32
            info = sf.info(files["audio"])
            assert (info.channels, info.samplerate, info.frames) == (1, AUDIO_RATE, SMOKE_FRAMES * SAMPLES_PER_FRAME)
            with av.open(str(files["frames"])) as container:
                stream = container.streams.video[0]
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
                assert float(stream.average_rate) == FPS
            assert len(frames) == SMOKE_FRAMES and frames[0].shape == (64, 64, 3)
        a = np.load(smoke_data / f"neighbour_emotion_{split}.npy")
        assert a.shape == (2 * M, 2 * M) and set(np.unique(a)) == {0, 1}
        assert (np.diag(a) == 1).all() and (a == a.T).all()


def test_emotion_statistics_are_sensible(smoke_data):
    split = load_split(smoke_data, "train", modalities=("emotion",), cache_dir=False)
    rates = split.emotion[..., AU].mean((0, 1))
    assert (rates > 0).sum() >= 10, f"too many AUs never occur: {rates}"
    assert rates.max() < 0.6
    assert split.emotion[..., VA].std((0, 1)).min() > 0.1


def test_default_preset_writes_751_frame_clips(tmp_path):
    """Write one session of the default preset (not the whole set) and read it back."""
    manifest = synthetic.plan_dataset("default", 0)
    assert {s: len(manifest["splits"][s]["pairs"]) for s in SPLITS} == {"train": 100, "val": 64, "test": 64}
    pair = manifest["splits"]["test"]["pairs"][0]
    frames = synthetic.PRESETS["default"].clip_frames
    assert frames == 751
    script = people.make_script(manifest["scripts"][pair["script"]], frames / FPS)
    synthetic._write_session(str(tmp_path), "test", pair, script, frames, manifest["personas"])
    files = reader.clip_files(tmp_path, "test", pair["paths"][0])
    assert reader.read_emotion(files["emotion"]).shape == (751, EMOTION_DIM)
    assert np.load(files["tdmm"]).shape == (751, 1, TDMM_DIM)
    assert sf.info(files["audio"]).frames == 751 * SAMPLES_PER_FRAME
    assert reader.probe_video(files["frames"]) == (751, float(FPS))


def test_scripts_and_personas_are_disjoint_across_splits(smoke_data):
    for preset, manifest in (
        ("smoke", json.loads((smoke_data / "manifest.json").read_text())),
        ("default", synthetic.plan_dataset("default", 0)),
    ):
        used = {
            s: (
                {p["script"] for p in manifest["splits"][s]["pairs"]},
                {q for p in manifest["splits"][s]["pairs"] for q in p["personas"]},
            )
            for s in SPLITS
        }
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            assert not used[a][0] & used[b][0], (preset, a, b)
            assert not used[a][1] & used[b][1], (preset, a, b)


def test_neighbours_follow_script_and_role(smoke_data):
    manifest = json.loads((smoke_data / "manifest.json").read_text())
    pairs = manifest["splits"]["val"]["pairs"]
    a = reader.load_neighbours(smoke_data, "val", 2 * len(pairs))
    key = [(p["script"], p["roles"][0]) for p in pairs] + [(p["script"], p["roles"][1]) for p in pairs]
    want = np.array([[k == j for j in key] for k in key])
    np.testing.assert_array_equal(a, want)
    assert a.sum(1).min() >= synthetic.PRESETS["smoke"].sessions_per_script


def test_listener_is_caused_by_the_speaker(smoke_data):
    """While listening, a listener's affect follows its own speaker's affect (lagged mimicry)
    far better than the listener of an item with another script does."""
    split = load_split(smoke_data, "train", modalities=("emotion",), cache_dir=False)
    sims = [oracle.simulate_item(smoke_data, "train", n) for n in range(len(split))]
    script = [sim["pair"]["script"] for sim in sims]
    own, unrelated = [], []
    for n, sim in enumerate(sims):
        listening = (1 - sim["plan"].floor[1 - sim["speaker_role"]]) > 0.99  # (T,) the listener listens
        speaker = sim["speaker"].affect[listening]  # (L, 3) smile, frown, surprise
        own.append(_ccc(speaker, sim["listener"].affect[listening]))
        unrelated += [
            _ccc(speaker, sims[m]["listener"].affect[listening]) for m in range(len(sims)) if script[m] != script[n]
        ]
    assert np.mean(own) > max(3 * np.mean(unrelated), np.mean(unrelated) + 0.05), (np.mean(own), np.mean(unrelated))


# ------------------------------------------------------------------------------- oracle
def test_oracle_is_seeded_and_appropriate(smoke_data):
    k = 4
    a = oracle.oracle_reactions(smoke_data, "test", 3, k, seed=1)
    b = oracle.oracle_reactions(smoke_data, "test", 3, k, seed=1)
    c = oracle.oracle_reactions(smoke_data, "test", 3, k, seed=2)
    T = SMOKE_FRAMES - 1
    assert a["emotion"].shape == (k, T, EMOTION_DIM) and a["tdmm"].shape == (k, T, TDMM_DIM)
    assert a["emotion"].dtype == np.float32 and a["tdmm"].dtype == np.float32
    np.testing.assert_array_equal(a["emotion"], b["emotion"])
    np.testing.assert_array_equal(a["tdmm"], b["tdmm"])
    assert not np.array_equal(a["emotion"], c["emotion"])
    assert not np.array_equal(a["emotion"][0], a["emotion"][1])  # k draws differ among themselves

    split = load_split(smoke_data, "test", modalities=("emotion",), cache_dir=False)
    listeners, A = split.listener_emotion.numpy(), split.neighbours
    appropriate, inappropriate = [], []
    for n in range(len(split)):
        for r in oracle.oracle_reactions(smoke_data, "test", n, 3, seed=0)["emotion"]:
            scores = np.array([_ccc(r, listeners[j]) for j in range(len(split))])
            appropriate.append(scores[A[n]].mean())
            inappropriate.append(scores[~A[n]].mean())
    assert np.mean(appropriate) > np.mean(inappropriate) + 0.15


def test_simulation_matches_the_written_files(smoke_data):
    split = load_split(smoke_data, "val", modalities=("emotion", "tdmm"), cache_dir=False)
    T = split.n_frames
    for n in (0, len(split) - 1):
        sim = oracle.simulate_item(smoke_data, "val", n)
        np.testing.assert_allclose(sim["speaker"].emotion[:T], split.speaker_emotion[n], atol=1e-5)
        np.testing.assert_allclose(sim["listener"].emotion[:T], split.listener_emotion[n], atol=1e-5)
        np.testing.assert_allclose(sim["listener"].tdmm[:T], split.person("listener")["tdmm"][n], atol=1e-6)


def test_committed_sample_matches_the_generator(tmp_path):
    sample = ROOT / "data" / "sample"
    assert check(sample)["ok"]
    fresh = synthetic.generate_world(tmp_path / "sample", "sample", 0)
    assert _files(sample) == _files(fresh)
    split = load_split(sample, "train", cache_dir=False)
    assert split.n_frames == 10 and split.frames.shape == (2, 10, 32, 32)


# ------------------------------------------------------------------------------- reader
def test_load_split_shapes_items_and_cache(smoke_data, tmp_path):
    cache = tmp_path / "cache"
    first = load_split(smoke_data, "train", frame_size=16, cache_dir=cache)
    assert len(list(cache.glob("train-*.pt"))) == 1
    again = load_split(smoke_data, "train", frame_size=16, cache_dir=cache)
    T, N, M = SMOKE_FRAMES - 1, len(first), len(first) // 2
    assert first.n_frames == T and len(first.clip_ids) == N
    assert first.emotion.shape == (N, T, EMOTION_DIM) and first.tdmm.shape == (N, T, TDMM_DIM)
    assert first.audio.shape == (N, T * SAMPLES_PER_FRAME) and first.frames.shape == (N, T, 16, 16)
    for key in ("emotion", "tdmm", "audio", "frames"):
        torch.testing.assert_close(getattr(first, key), getattr(again, key))
    # mirrored items: item k+M is item k with the roles swapped
    torch.testing.assert_close(first.speaker_index[:M], first.listener_index[M:])
    assert first.items[M].speaker == first.items[0].listener and first.items[M].mirrored
    person = first.person("listener")
    assert person["audio"].dtype == torch.float32 and person["audio"].abs().max() <= 1
    assert person["frames"].shape == (N, T, 16, 16) and person["frames"].dtype == torch.uint8
    torch.testing.assert_close(first.listener_emotion, person["emotion"])
    # the cache follows the files: a changed file means a fresh decode
    csv = reader.clip_files(smoke_data, "train", first.clip_ids[0])["emotion"]
    backup = csv.read_bytes()
    try:
        lines = backup.decode().splitlines()
        lines[1] = "1.0," + lines[1].split(",", 1)[1]
        csv.write_text("\n".join(lines) + "\n")
        changed = load_split(smoke_data, "train", frame_size=16, cache_dir=cache, modalities=("emotion",))
        assert changed.emotion[0, 0, 0] == 1.0 and len(list(cache.glob("train-*.pt"))) == 2
    finally:
        csv.write_bytes(backup)


def _to_react2023(src: Path, dst: Path, split: str) -> None:
    """Rewrite one split in 2023-style variants: PNG frame folders under ``cropped_face``,
    Emotion under the video person names, one recording under UDIVA's extra folder level,
    stereo 44.1 kHz audio and an extra npy next to each clip's npy."""
    import torchaudio.functional as AF
    from PIL import Image

    rows = (src / f"{split}.csv").read_text().splitlines()
    first_session = rows[1].split(",")[1].rsplit("/", 2)[0]
    rename = lambda clip: clip.replace(first_session, "UDIVA/talk/" + first_session.split("/")[1])  # noqa: E731
    lines = [rows[0]]
    for row in rows[1:]:
        i, a, b = row.split(",")
        lines.append(f"{i},{rename(a)},{rename(b)}")
        for clip in (a, b):
            files = reader.clip_files(src, split, clip)
            out = dst / split
            new = rename(clip)
            (out / "Emotion" / new).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(files["emotion"], out / "Emotion" / f"{new}.csv")
            (out / "3D_FV_files" / new).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(files["tdmm"], out / "3D_FV_files" / f"{new}.npy")
            np.save(out / "3D_FV_files" / f"{new}_extra.npy", np.zeros((3, 7)))
            audio, _ = sf.read(files["audio"], dtype="float32")
            loud = AF.resample(torch.from_numpy(audio), 16000, 44100).numpy()
            (out / "Audio_files" / new).parent.mkdir(parents=True, exist_ok=True)
            sf.write(out / "Audio_files" / f"{new}.wav", np.stack([loud, loud], 1), 44100, subtype="FLOAT")
            folder = out / "cropped_face" / new
            folder.mkdir(parents=True)
            with av.open(str(files["frames"])) as container:
                for t, frame in enumerate(container.decode(video=0), 1):
                    Image.fromarray(frame.to_ndarray(format="rgb24")).save(folder / f"{t}.png")
    (dst / f"{split}.csv").write_text("\n".join(lines) + "\n")
    shutil.copy(src / f"neighbour_emotion_{split}.npy", dst / f"neighbour_emotion_{split}.npy")


def test_react2023_layout_reads_like_2024(smoke_data, tmp_path):
    old = tmp_path / "react2023"
    _to_react2023(smoke_data, old, "test")
    assert check(old, "test")["ok"], check(old, "test")["problems"]
    a = load_split(smoke_data, "test", cache_dir=False)
    b = load_split(old, "test", cache_dir=False)
    assert any(c.startswith("UDIVA/") for c in b.clip_ids) and b.n_frames == a.n_frames
    torch.testing.assert_close(a.emotion, b.emotion)
    torch.testing.assert_close(a.tdmm, b.tdmm)
    np.testing.assert_array_equal(a.neighbours, b.neighbours)
    assert (a.frames.float() - b.frames.float()).abs().mean() < 2.0  # mp4 luma vs PNG RGB -> grey
    wave_a, wave_b = a.person("speaker")["audio"], b.person("speaker")["audio"]
    assert ((wave_a - wave_b) ** 2).mean() < 0.1 * (wave_a**2).mean()  # 16k -> 44.1k stereo -> 16k (band edge lost)


# ---------------------------------------------------------------------------- bad input
def _clip(root: Path, split: str = "test", n: int = 0, modality: str = "emotion") -> Path:
    return reader.clip_files(root, split, read_items(root, split)[n].speaker)[modality]


def _expect_problem(root: Path, needle: str, *names: str) -> str:
    """``check`` reports the problem naming the files, the CLI raises it, loading raises."""
    summary = check(root, "test")
    assert not summary["ok"]
    hits = [p for p in summary["problems"] if needle in p]
    assert hits, summary["problems"]
    for name in names:
        assert any(name in p for p in hits), (name, hits)

    class Args:
        pass

    args = Args()
    args.root, args.split = str(root), "test"
    with pytest.raises(DataError, match="problem"):
        checks.cli_check(args)
    with pytest.raises(DataError) as err:
        load_split(root, "test", cache_dir=False)
    return str(err.value)


def test_missing_file(broken):
    wav = _clip(broken, modality="audio")
    wav.unlink()
    message = _expect_problem(broken, "missing audio file", str(wav))
    assert str(wav) in message


def test_csv_with_wrong_column_count(broken):
    csv = _clip(broken)
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0]] + [line.rsplit(",", 1)[0] for line in lines[1:]]) + "\n")
    message = _expect_problem(broken, "has 24 columns, expected 25", str(csv))
    assert f"Emotion CSV {csv} has 24 columns, expected 25" in message


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_nan_or_inf_in_csv(broken, value):
    csv = _clip(broken)
    lines = csv.read_text().splitlines()
    lines[5] = f"{value}," + lines[5].split(",", 1)[1]
    csv.write_text("\n".join(lines) + "\n")
    assert str(csv) in _expect_problem(broken, "NaN/inf", str(csv))


def test_nan_in_3dmm(broken):
    npy = _clip(broken, modality="tdmm")
    x = np.load(npy)
    x[3, 0, 7] = np.nan
    np.save(npy, x)
    assert str(npy) in _expect_problem(broken, "NaN/inf", str(npy))


def test_too_few_frames(broken):
    csv = _clip(broken, n=1)
    csv.write_text("\n".join(csv.read_text().splitlines()[:101]) + "\n")  # 100 of 151 frames
    assert str(csv) in _expect_problem(broken, "too few frames", str(csv))


@pytest.mark.parametrize("modality,kind", [("frames", "video MP4"), ("audio", "audio WAV")])
def test_unreadable_media(broken, modality, kind):
    path = _clip(broken, modality=modality)
    path.write_bytes(b"not a media file" * 10)
    assert str(path) in _expect_problem(broken, f"{kind} {path} is unreadable", str(path))


def test_neighbour_matrix_of_wrong_shape(broken):
    path = broken / "neighbour_emotion_test.npy"
    np.save(path, np.eye(5, dtype=np.int64))
    assert str(path) in _expect_problem(broken, "has shape (5, 5), expected (12, 12)", str(path))


def test_neighbour_matrix_with_an_empty_row(broken):
    path = broken / "neighbour_emotion_test.npy"
    a = np.load(path)
    a[2] = 0
    np.save(path, a)
    assert str(path) in _expect_problem(broken, "empty rows (first: item 2)", str(path))


def test_split_row_pointing_to_a_missing_clip(broken):
    csv = broken / "test.csv"
    csv.write_text(csv.read_text() + "99,NoXI/999_nowhere/Expert_video/1,NoXI/999_nowhere/Novice_video/1\n")
    np.save(broken / "neighbour_emotion_test.npy", np.eye(14, dtype=np.int64))
    message = _expect_problem(broken, "999_nowhere", "Expert_video/1", "Novice_video/1")
    assert "missing emotion file for clip NoXI/999_nowhere/Expert_video/1" in message


def test_one_emotion_person_mapping_for_reader_and_writer(smoke_data):
    """The 2024 release files Emotion under P1/P2: one mapping, used by the writer and the reader."""
    assert [reader.emotion_person(p) for p in ("Expert_video", "Novice_video", "P25", "P26", "P1", "alice")] == [
        "P1",
        "P2",
        "P1",
        "P2",
        None,
        None,
    ]
    for clip in {it.speaker for it in read_items(smoke_data, "train")}:
        written = reader.emotion_csv_2024(smoke_data / "train", clip)
        assert written.is_file() and reader.clip_files(smoke_data, "train", clip)["emotion"] == written
    assert issubclass(DataError, UserError)


def test_cli_synth_then_check(smoke_data, tmp_path, capsys):
    from reactdiff_lite.cli import main

    assert main(["data", "synth", "--out", str(tmp_path / "d"), "--preset", "smoke", "--seed", "3"]) == 0
    assert main(["data", "check", "--root", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("\n{") + 1 :])
    assert summary["ok"] and summary["splits"]["train"]["model_frames"] == SMOKE_FRAMES - 1
    seed0, seed3 = _files(smoke_data), _files(tmp_path / "d")  # another seed, other data
    assert sum(seed0[k] != seed3.get(k) for k in seed0 if k.endswith(".csv")) > 30


# ----------------------------------------------------------------------------- renderer
def test_render_faces_follow_the_attributes():
    e = np.zeros((5, EMOTION_DIM), np.float32)
    e[1, AU_NAMES.index("AU12")] = 1.0  # smile
    e[2, AU_NAMES.index("AU26")] = 1.0  # jaw drop
    e[3, AU_NAMES.index("AU4")] = 0.7  # brow lowerer, continuous
    tdmm = np.zeros((5, 1, TDMM_DIM), np.float32)
    tdmm[4, 0, TDMM_ROT.start] = 0.3  # pitch: a nod down
    faces = render_faces(e, tdmm, size=64)
    assert faces.shape == (5, 64, 64, 3) and faces.dtype == np.uint8
    diff = lambda i, rows: np.abs(faces[i, rows].astype(int) - faces[0, rows]).sum()  # noqa: E731
    mouth, brows = slice(40, 56), slice(12, 24)
    assert diff(1, mouth) > 0 and diff(1, brows) == 0
    assert diff(2, mouth) > diff(1, mouth) / 2 and diff(2, brows) == 0
    assert diff(3, brows) > 0 and diff(3, mouth) == 0
    assert diff(4, slice(0, 64)) > 0
    np.testing.assert_array_equal(render_faces(e[:1]), faces[:1])  # no 3DMM = frontal


def test_face_plots(monkeypatch):
    """``face_strip`` lays faces out as rendered; ``animate`` returns a matplotlib animation
    without IPython (the HTML player imports it only when asked)."""
    import sys

    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(0)
    emotion = rng.uniform(0, 1, (2, 30, EMOTION_DIM)).astype(np.float32)
    fig = face_strip(emotion, n=4, size=32, labels=["a", "b"])
    image = fig.axes[0].get_images()[0].get_array()
    assert image.shape == (2 * 32, 4 * 32, 3)
    np.testing.assert_array_equal(image[:32, :32], render_faces(emotion[0, :1], size=32)[0])
    monkeypatch.setitem(sys.modules, "IPython", None)  # importing IPython now fails
    anim = animate(emotion, step=10, html=False)
    assert type(anim).__name__ == "FuncAnimation"
