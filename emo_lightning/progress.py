"""A terminal progress bar over the denoising steps of one video (rate, ETA, current clip)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from emo_lightning.pipeline import Progress


class StepBar:
    """Pass as ``on_step=`` to :meth:`EMOPipeline.write_video`; the total is known at the first step."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar: tqdm | None = None

    def __call__(self, progress: Progress) -> None:
        if self.bar is None:
            self.bar = tqdm(total=progress.total, desc=self.desc, unit="step", dynamic_ncols=True)
        self.bar.set_postfix_str(f"clip {progress.clip}/{progress.clips}", refresh=False)
        self.bar.update(progress.step - self.bar.n)

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.close()
