"""The evaluation metrics: the Fréchet distance against a scipy reference, distances that grow with distortion,
SSIM/PSNR as torchmetrics' functional forms, DDP sync over gloo, the sync offset searches on known shifts."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.multiprocessing as mp
from scipy.ndimage import gaussian_filter
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from emo_lightning import registry
from emo_lightning.data import make_clip
from emo_lightning.evaluation.frechet import FrechetDistance, KernelDistance, frechet_inception_distance
from emo_lightning.evaluation.syncnet_score import offset_search


def scipy_frechet(x: np.ndarray, y: np.ndarray) -> float:
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def frechet(x: np.ndarray, y: np.ndarray) -> float:
    metric = FrechetDistance(x.shape[1])
    metric.update(torch.from_numpy(x[: len(x) // 2]), real=True)  # two updates: the running sums accumulate
    metric.update(torch.from_numpy(x[len(x) // 2 :]), real=True)
    metric.update(torch.from_numpy(y), real=False)
    return float(metric.compute())


def test_frechet_distance_equals_scipy_reference_and_is_zero_against_itself():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12))
    y = rng.standard_normal((250, 12)) @ rng.standard_normal((12, 12)) + 0.5
    assert frechet(x, y) == pytest.approx(scipy_frechet(x, y), abs=1e-6, rel=1e-9)
    assert abs(frechet(x, x)) < 1e-6


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return make_clip(3, 96, resolution=96)["frames"]


def distorted(frames: np.ndarray, how: str, amount: float) -> np.ndarray:
    out = frames.astype(np.float64)
    if how == "blur":
        out = gaussian_filter(out, sigma=(0, amount, amount, 0))
    else:
        out = out + np.random.default_rng(1).normal(0, amount, out.shape)
    return np.clip(out, 0, 255).round().astype(np.uint8)


def chw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


def set_distance(kind: str, metric: str, real: np.ndarray, fake: np.ndarray) -> float:
    network = registry.build(kind, "random_conv")  # the default config: tiny ones (32 px) barely see a mild blur
    if metric == "kid":
        scorer = KernelDistance(network, subsets=20, subset_size=40)
    else:
        scorer = frechet_inception_distance(network)
    if kind == "video_features":  # 8-frame clips (N, 3, 8, H, W)
        def to_input(x):
            return chw(x).reshape(-1, 8, *chw(x).shape[1:]).transpose(1, 2)
    else:
        to_input = chw
    scorer.update(to_input(real), real=True)
    scorer.update(to_input(fake), real=False)
    value = scorer.compute()
    return float(value[0] if isinstance(value, tuple) else value)


@pytest.mark.parametrize("kind,metric", [("frame_features", "fid"), ("frame_features", "kid"),
                                         ("video_features", "fvd")])
@pytest.mark.parametrize("how,amounts", [("blur", (1.5, 4.0)), ("noise", (40.0, 80.0))])
def test_distances_grow_with_blur_and_noise(frames, kind, metric, how, amounts):
    # baseline: other frames of the same clip (every other frame; for clips, clips starting half a clip later)
    real = frames[::2] if kind == "frame_features" else frames
    baseline = set_distance(kind, metric, real, frames[1::2] if kind == "frame_features" else frames[4:92])
    mild, strong = (set_distance(kind, metric, real, distorted(real, how, a)) for a in amounts)
    assert baseline < mild < strong, (baseline, mild, strong)


def test_ssim_and_psnr_accumulated_over_batches_match_torchmetrics_functional(frames):
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    real = chw(frames[:40]).float() / 255
    fake = chw(distorted(frames[:40], "noise", 10.0)).float() / 255
    ssim, psnr = StructuralSimilarityIndexMeasure(data_range=1.0), PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))
    for lo in range(0, 40, 16):
        ssim.update(fake[lo : lo + 16], real[lo : lo + 16])
        psnr.update(fake[lo : lo + 16], real[lo : lo + 16])
    assert float(ssim.compute()) == pytest.approx(float(structural_similarity_index_measure(fake, real,
                                                                                            data_range=1.0)), 1e-5)
    assert float(psnr.compute()) == pytest.approx(float(peak_signal_noise_ratio(fake, real, data_range=1.0,
                                                                                dim=(1, 2, 3))), 1e-5)


def test_metrics_synced_over_two_gloo_processes_equal_one_process():
    from gloo_worker import metrics_on, worker

    torch.manual_seed(0)
    features = torch.randn(64, 6, dtype=torch.float64)
    scores = [0.1, 0.5, float("nan"), 0.9, 0.3, 0.2]
    expected = metrics_on(features, scores)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.start_processes(worker, args=(port, features, scores, queue), nprocs=2, start_method="spawn")
    results = [queue.get() for _ in range(2)]
    for _, (distance, means) in results:
        assert distance == pytest.approx(expected[0], rel=1e-9)
        assert means["score"] == pytest.approx(expected[1]["score"], rel=1e-12)


def test_syncnet_offset_search_finds_the_shift_between_embeddings():
    """Audio embeddings equal to the video's, 3 windows later: Sync-D ≈ 0 at offset +3, a clear confidence."""
    torch.manual_seed(0)
    video = torch.randn(60, 16)
    audio = torch.cat([torch.randn(3, 16), video[:-3]])
    scores = offset_search(video, audio, max_offset=15)
    assert scores["sync_offset"] == 3
    assert scores["sync_d"] < 0.5 < scores["sync_c"]


def test_tiny_syncnet_scores_a_clip_end_to_end():
    model = registry.build("sync_model", "syncnet_v2", path=None, width=16, dim=16)
    crops = torch.randint(0, 256, (40, 3, 224, 224), dtype=torch.uint8)
    scores = offset_search(model.embed_video(crops), model.embed_audio(torch.randn(40 * 640) * 0.1, 40), 15)
    assert set(scores) == {"sync_c", "sync_d", "sync_offset"} and all(np.isfinite(list(scores.values())))
    assert -15 <= scores["sync_offset"] <= 15


def test_syncnet_weights_load_from_a_state_dict_file(tmp_path):
    """A file in the public syncnet_v2.model layout (a state dict of netcnnaud/netfcaud/netcnnlip/netfclip) loads
    with weights_only=True; a file of another network is a clear error."""
    torch.manual_seed(0)
    source = registry.build("sync_model", "syncnet_v2", path=None, width=16, dim=16)
    torch.save(source.state_dict(), tmp_path / "syncnet.model")
    loaded = registry.build("sync_model", "syncnet_v2", path=str(tmp_path / "syncnet.model"), width=16, dim=16)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values(),
                                                 strict=True))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.model")
    with pytest.raises(ValueError, match="not a syncnet_v2 state dict"):
        registry.build("sync_model", "syncnet_v2", path=str(tmp_path / "other.model"), width=16, dim=16)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        registry.build("sync_model", "syncnet_v2", path=str(tmp_path / "absent.model"))
