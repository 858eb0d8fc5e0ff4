"""Face locators: face-region mask (+ landmark map) → latent residual."""

from emo_lightning.components.face_locator import conv, landmarks  # noqa: F401  (register built-ins)
