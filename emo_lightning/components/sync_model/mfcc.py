"""MFCCs as SyncNet was trained on them (python_speech_features' ``mfcc`` defaults: 25 ms rectangular windows
every 10 ms, pre-emphasis 0.97, 26 mel filters over a 512-point FFT, 13 coefficients, lifter 22, and the first
coefficient replaced by the log frame energy), in NumPy."""

from __future__ import annotations

import numpy as np
from scipy.fft import dct


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595 * np.log10(1 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700 * (10 ** (mel / 2595.0) - 1)


def mel_filterbank(num_filters: int, nfft: int, sample_rate: int) -> np.ndarray:
    """Triangular mel filters (num_filters, nfft // 2 + 1) from 0 Hz to Nyquist."""
    mels = np.linspace(_hz_to_mel(0), _hz_to_mel(sample_rate / 2), num_filters + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate).astype(int)
    bank = np.zeros((num_filters, nfft // 2 + 1))
    for j in range(num_filters):
        left, centre, right = bins[j], bins[j + 1], bins[j + 2]
        bank[j, left:centre] = (np.arange(left, centre) - left) / max(centre - left, 1)
        bank[j, centre:right] = (right - np.arange(centre, right)) / max(right - centre, 1)
    return bank


def mfcc(signal: np.ndarray, sample_rate: int = 16000, num_coefficients: int = 13, num_filters: int = 26,
         nfft: int = 512, window_seconds: float = 0.025, step_seconds: float = 0.01) -> np.ndarray:
    """(T, num_coefficients) MFCCs of a mono ``signal``; T = 1 + ceil((S - window) / step)."""
    signal = np.asarray(signal, np.float64)
    emphasised = np.append(signal[:1], signal[1:] - 0.97 * signal[:-1])
    length, step = round(window_seconds * sample_rate), round(step_seconds * sample_rate)
    count = 1 + int(np.ceil(max(len(emphasised) - length, 0) / step))
    padded = np.pad(emphasised, (0, (count - 1) * step + length - len(emphasised)))
    frames = padded[np.arange(length)[None] + step * np.arange(count)[:, None]]
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    eps = np.finfo(float).eps
    energy = np.maximum(power.sum(1), eps)
    bands = np.log(np.maximum(power @ mel_filterbank(num_filters, nfft, sample_rate).T, eps))
    coefficients = dct(bands, type=2, axis=1, norm="ortho")[:, :num_coefficients]
    lifter = 1 + 11 * np.sin(np.pi * np.arange(num_coefficients) / 22)
    coefficients = coefficients * lifter
    coefficients[:, 0] = np.log(energy)
    return coefficients
