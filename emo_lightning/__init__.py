"""emo-lightning: EMO-style audio-driven portrait video diffusion, from swappable components."""

__version__ = "0.1.0"
