"""Head-pose / speed estimators: face track → head rotation speed per frame (used by `emo preprocess`)."""

from emo_lightning.components.pose_estimator import flow, insightface  # noqa: F401  (register built-ins)
