"""A one-line progress bar for training, on stderr; plain periodic lines when not a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO


def _clock(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """``[=====>     ]  42% 3300/7813 loss 0.431 acc 0.872 11234 ex/s ETA 01:23``.

    On a terminal it redraws in place at most every ``interval`` seconds; otherwise (a log file,
    CI) it writes a plain line each ``plain_every`` seconds. ``enabled=False`` writes nothing.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        enabled: bool = True,
        interval: float = 0.2,
        plain_every: float = 30.0,
        width: int = 24,
        start_step: int = 0,
    ) -> None:
        self.total = total
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.interval = interval if self.tty else plain_every
        self.width = width
        self._start_step = start_step
        self._start_time = time.perf_counter()
        self._last = self._start_time
        self.loss: float | None = None
        self.accuracy: float | None = None
        self.val_accuracy: float | None = None

    def update(self, step: int, examples_per_step: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < self.interval and step < self.total:
            return
        self._last = now
        done_here = step - self._start_step
        rate = done_here / max(now - self._start_time, 1e-9)  # steps/s this session
        eta = (self.total - step) / rate if rate > 0 else 0.0
        frac = min(step / self.total, 1.0)
        filled = int(frac * self.width)
        bar = ("=" * filled + (">" if filled < self.width else "")).ljust(self.width)[: self.width]
        parts = [f"[{bar}] {frac * 100:3.0f}% {step}/{self.total}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        if self.accuracy is not None:
            parts.append(f"acc {self.accuracy:.3f}")
        if self.val_accuracy is not None:
            parts.append(f"val {self.val_accuracy:.4f}")
        parts.append(f"{rate * examples_per_step:.0f} ex/s ETA {_clock(eta)}")
        text = "  ".join(parts)
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def step_callback(self, examples_per_step: int) -> Callable[[Any, dict[str, Any]], None]:
        """An ``on_step(progress, info)`` for the training loops: takes loss and accuracy from
        "train" records and validation accuracy from "val" records, then redraws."""

        def on_step(progress: Any, info: dict[str, Any]) -> None:
            if info.get("kind") == "val":
                self.val_accuracy = info["accuracy"]
            elif info.get("kind") == "train":
                self.loss, self.accuracy = info["loss"], info["accuracy"]
            self.update(progress.step, examples_per_step)

        return on_step

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
