"""Baselines, results tables and ``python -m reactdiff_lite evaluate`` on the smoke dyadic world."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from reactdiff_lite import stats
from reactdiff_lite.baselines import BASELINES, nearest_speakers, predict_baseline, window_nn
from reactdiff_lite.cli import main
from reactdiff_lite.data.cache import load_split
from reactdiff_lite.evaluation import (
    PredictionsError,
    check_predictions,
    evaluate_methods,
    load_predictions,
    markdown_table,
    results_markdown,
)
from reactdiff_lite.schema import EMOTION_DIM, TDMM_DIM
from reactdiff_lite.utils import UserError


@pytest.fixture(scope="module")
def splits(smoke_data):
    return load_split(smoke_data, "train", modalities=("emotion",)), load_split(
        smoke_data, "test", modalities=("emotion",)
    )


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_shapes_and_seeds(splits, name):
    train, test = splits
    a = predict_baseline(name, train, test, k=4, seed=1)
    assert a.shape == (len(test), 4, test.n_frames, EMOTION_DIM) and a.dtype == np.float32
    np.testing.assert_array_equal(a, predict_baseline(name, train, test, k=4, seed=1))
    if name in ("B_Random", "Oracle"):
        assert not np.array_equal(a, predict_baseline(name, train, test, k=4, seed=2))


def test_baselines_mean_what_they_say(splits):
    train, test = splits
    L, S = test.listener_emotion.numpy(), test.speaker_emotion.numpy()
    k = 3
    np.testing.assert_array_equal(predict_baseline("GT", train, test, k)[:, 2], L)
    np.testing.assert_array_equal(predict_baseline("B_Mime", train, test, k)[:, 1], S)
    seq = predict_baseline("B_MeanSeq", train, test, k)
    np.testing.assert_allclose(
        seq[3, 0], train.listener_emotion.numpy().astype(np.float64).mean(0), rtol=1e-6, atol=1e-8
    )
    fr = predict_baseline("B_MeanFr", train, test, k)
    np.testing.assert_allclose(
        fr[0, 0, 7], train.listener_emotion.numpy().astype(np.float64).mean((0, 1)), rtol=1e-6, atol=1e-8
    )
    assert np.ptp(fr, axis=2).max() == 0
    r = predict_baseline("B_Random", train, test, k)
    assert 0 <= r.min() and r.max() < 1


def test_window_nn_stitches_the_nearest_windows(splits):
    """Searching the test split itself, every speaker window finds itself first, so reaction 0
    is the real listener; reaction 1 is stitched from other items."""
    _, test = splits
    pred = predict_baseline("NN_window", test, test, k=2)
    np.testing.assert_array_equal(pred, window_nn(test, test, 2, 0, None, window=50))
    np.testing.assert_array_equal(pred[:, 0], test.listener_emotion.numpy())
    short = window_nn(test, test, 2, 0, None, window=40)  # 150 frames: a last window of 30, matched on 30
    full = 40 * (test.n_frames // 40)
    np.testing.assert_array_equal(short[:, 0, :full], test.listener_emotion.numpy()[:, :full])
    assert short.shape == pred.shape and np.isfinite(short).all()
    second = pred[:, 1].reshape(len(test), -1, 25)
    assert not np.array_equal(pred[:, 1], pred[:, 0])
    clip_nn = predict_baseline("NN", test, test, k=2)[:, 1]
    assert not np.array_equal(pred[:, 1], clip_nn) and np.isfinite(second).all()


def test_nearest_speakers_finds_the_same_speaker():
    rng = np.random.default_rng(0)
    train = rng.random((6, 40, 25))
    test = train[[4, 1]] + 0.01 * rng.random((2, 40, 25))
    idx = nearest_speakers(train, test, 8)
    assert idx.shape == (2, 8) and idx[0, 0] == 4 and idx[1, 0] == 1
    assert sorted(idx[0, :6]) == list(range(6)) and list(idx[0, 6:]) == list(idx[0, :2])  # cycles past N_train


def test_baselines_rank_as_expected(splits):
    train, test = splits
    preds = {name: predict_baseline(name, train, test, k=5) for name in BASELINES}
    res = evaluate_methods(preds, test)["methods"]
    assert res["GT"]["FRDist"] == 0 and res["GT"]["FRDiv"] == 0 and res["GT"]["FRRea_proxy"] < 1e-5
    assert res["GT"]["FRCorr"] > res["Oracle"]["FRCorr"] > res["B_Random"]["FRCorr"]
    assert res["Oracle"]["FRDist"] < min(res[b]["FRDist"] for b in ("B_Random", "B_Mime", "B_MeanFr", "NN"))
    assert res["B_MeanFr"]["FRVar"] == res["B_MeanFr"]["FRDvs"] == res["B_MeanSeq"]["FRDiv"] == 0
    assert res["B_Random"]["FRDiv"] == pytest.approx(1 / 6, rel=0.02)
    assert res["Oracle"]["FRDiv"] > 0 and res["NN"]["FRDiv"] > 0


def test_intervals_are_cluster_bootstraps_of_the_per_item_scores(splits):
    train, test = splits
    preds = {name: predict_baseline(name, train, test, k=3) for name in ("B_Random", "Oracle", "GT")}
    table = evaluate_methods(preds, test, realism=False, resamples=500)
    clusters = stats.clusters(test.neighbours)
    assert table["intervals"]["clusters"] == clusters.max() + 1 < len(test)  # sets, not items
    for name, row in table["methods"].items():
        for metric in ("FRCorr", "FRDist", "FRDiv"):
            scores = np.array(table["items"][name][metric])
            assert scores.shape == (len(test),) and scores.mean() == pytest.approx(row[metric], rel=1e-12)
            lo, hi = row["ci"][metric]
            assert lo <= row[metric] <= hi
            assert (lo, hi) == tuple(stats.bootstrap(scores, clusters, resamples=500).ci)
    assert table["methods"]["GT"]["ci"]["FRDist"] == [0.0, 0.0]
    assert "[" in results_markdown(table) and "conditional on one training seed" in results_markdown(table)
    assert "ci" not in evaluate_methods(preds, test, realism=False, intervals=False)["methods"]["GT"]


def test_oracle_and_training_baselines_refuse_what_they_cannot_do(splits, tmp_path):
    train, test = splits
    with pytest.raises(ValueError, match="needs the synthetic dyadic world: .*manifest.json is missing"):
        predict_baseline("Oracle", train, test, data_root=tmp_path)
    with pytest.raises(ValueError, match="B_MeanSeq needs the training split"):
        predict_baseline("B_MeanSeq", None, test)
    with pytest.raises(ValueError, match="unknown baseline 'B_Magic'"):
        predict_baseline("B_Magic", train, test)


def test_results_markdown_has_arrows_and_rows():
    res = {"methods": {"ours": {"FRCorr": 1.5, "FRDist": 20.0, "FRSyn": 3.0}, "GT": {"FRCorr": 8.0, "FRDist": 0.0}}}
    md = results_markdown(res).splitlines()
    assert md[0] == "| method | FRCorr ↑ | FRDist ↓ | FRSyn ↓ |"
    assert md[2] == "| ours | 1.5000 | 20.0000 | 3.0000 |" and md[3] == "| GT | 8.0000 | 0.0000 | – |"


def test_markdown_table_columns_header_and_digits():
    rows = {"DDIM 10": {"FRDist": 2.0, "FRCorr": 0.25, "FRRea_proxy": 1.0, "steps": 10.0}}
    md = markdown_table(rows, ["FRCorr", "FRRea_proxy", "steps"], first_header="sampler", digits=2).splitlines()
    assert md == [
        "| sampler | FRCorr ↑ | FRRea-proxy ↓ | steps |",
        "|---|---:|---:|---:|",
        "| DDIM 10 | 0.25 | 1.00 | 10.00 |",
    ]


def _write_preds(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_check_predictions_errors(splits):
    _, test = splits
    N, T = len(test), test.n_frames
    good = np.zeros((N, 2, T, EMOTION_DIM), np.float32)
    check_predictions(good, test)
    with pytest.raises(PredictionsError, match=f"has N = {N - 1} items, but the test split .* has {N}"):
        check_predictions(good[1:], test)
    with pytest.raises(PredictionsError, match=rf"expected \({N}, K, {T}, {EMOTION_DIM}\)"):
        check_predictions(good[:, :, 1:], test)
    with pytest.raises(PredictionsError, match=rf"has shape \({N}, {T}, {EMOTION_DIM}\), expected \(N, K, T"):
        check_predictions(good[:, 0], test)
    with pytest.raises(PredictionsError, match=rf"tdmm has shape .* expected \({N}, K, {T}, {TDMM_DIM}\)"):
        check_predictions(good, test, key="tdmm", dim=TDMM_DIM)
    with pytest.raises(PredictionsError, match="emotion has dtype <U1, expected numbers"):
        check_predictions(np.full(good.shape, "a"), test)
    bad = good.copy()
    bad[1, 0, 5, 3] = np.nan
    with pytest.raises(PredictionsError, match=r"1 NaN/inf values \(first at item 1, prediction 0, frame 5, dim 3\)"):
        check_predictions(bad, test)
    assert issubclass(PredictionsError, UserError)


def test_load_predictions_errors(tmp_path):
    """Each unusable file gets one message naming the file and what to do, never numpy's own."""
    emotion = np.zeros((3, 2, 10, EMOTION_DIM), np.float32)
    ok = _write_preds(tmp_path / "ok.npz", emotion=emotion, tdmm=np.zeros((3, 2, 10, TDMM_DIM), np.float32))
    assert set(load_predictions(ok)) == {"emotion", "tdmm"}
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x80\x04 definitely not a zip archive" * 10)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(Path(ok).read_bytes()[:-30])
    npy = tmp_path / "single.npy"
    np.save(npy, emotion)
    cases = {
        tmp_path / "missing.npz": "does not exist; expected a .npz with an emotion array",
        tmp_path: "is not a .npz archive",
        garbage: "is not a .npz archive",
        truncated: "is not a .npz archive|is unreadable",
        npy: "is not a .npz archive",
        _write_preds(tmp_path / "objects.npz", emotion=np.array([None, 1], dtype=object)): "holds object .*arrays",
        _write_preds(tmp_path / "nokey.npz", latent=emotion): r"has no 'emotion' array \(found \['latent'\]\)",
    }
    for path, message in cases.items():
        with pytest.raises(PredictionsError, match=message) as err:
            load_predictions(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value), path


def test_cli_evaluate_with_baselines(splits, smoke_data, tmp_path, capsys):
    _, test = splits
    rng = np.random.default_rng(0)
    L = test.listener_emotion.numpy()
    emotion = np.clip(L[:, None] + 0.1 * rng.normal(size=(len(test), 3, *L.shape[1:])), 0, 1).astype(np.float32)
    pred = _write_preds(tmp_path / "preds.npz", emotion=emotion)
    assert main(["evaluate", "--pred", pred, "--data", str(smoke_data), "--split", "test", "--baselines"]) == 0
    out = capsys.readouterr().out
    assert "| method | FRCorr ↑ | FRDist ↓ | FRDiv ↑ | FRVar ↑ | FRDvs ↑ | FRSyn ↓ | FRRea-proxy ↓ |" in out
    for name in ["preds", *BASELINES]:
        assert f"| {name} |" in out
    res = json.loads((tmp_path / "preds.metrics.json").read_text())
    assert set(res["methods"]) == {"preds", *BASELINES} and res["N"] == len(test) and res["K"]["preds"] == 3
    assert 0 < res["methods"]["preds"]["FRDist"] < res["methods"]["B_Random"]["FRDist"]


def test_cli_evaluate_errors(splits, smoke_data, tmp_path, capsys):
    _, test = splits
    N, T = len(test), test.n_frames
    args = ["evaluate", "--data", str(smoke_data), "--split", "test", "--pred"]
    D = EMOTION_DIM
    cases = {
        "short.npz": (
            dict(emotion=np.zeros((N - 2, 2, T, D), np.float32)),
            f"has N = {N - 2} items, but the test split",
        ),
        "frames.npz": (dict(emotion=np.zeros((N, 2, T + 1, D), np.float32)), f"expected ({N}, K, {T}, {D})"),
        "nan.npz": (dict(emotion=np.full((N, 2, T, D), np.nan, np.float32)), "NaN/inf values"),
        "nokey.npz": (dict(latent=np.zeros((N, 2, T, 8), np.float32)), "has no 'emotion' array (found ['latent'])"),
    }
    for name, (arrays, message) in cases.items():
        assert main(args + [_write_preds(tmp_path / name, **arrays)]) == 2, name
        err = capsys.readouterr().err
        assert message in err and "evaluate: error:" in err, (name, err)
    assert main(args + [str(tmp_path / "missing.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "garbage.npz").write_bytes(b"not an archive")
    assert main(args + [str(tmp_path / "garbage.npz")]) == 2
    assert "garbage.npz is not a .npz archive" in capsys.readouterr().err

    broken = tmp_path / "data"
    shutil.copytree(smoke_data, broken, ignore=shutil.ignore_patterns(".cache"))
    np.save(broken / "neighbour_emotion_test.npy", np.eye(N - 1, dtype=np.int64))
    ok = _write_preds(tmp_path / "ok.npz", emotion=np.zeros((N, 2, T, EMOTION_DIM), np.float32))
    assert main(["evaluate", "--pred", ok, "--data", str(broken), "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "neighbour_emotion_test.npy has shape" in err and f"for {N} mirrored items" in err
