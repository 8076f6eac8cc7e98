"""The readable line a long pass prints, apart from ``runlog`` so that modules which never touch
Ray (the LLM's network, extraction's loops) can report progress without importing it."""

from __future__ import annotations

import time


class Progress:
    """A line every ``every`` seconds while a long pass runs (done, rate, time left); nothing
    for a pass that ends sooner."""

    def __init__(self, what: str, total: int, every: float = 30.0) -> None:
        self.what, self.total, self.every = what, total, every
        self.t0 = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if done and now - self.last >= self.every:
            rate = done / (now - self.t0)
            print(f"  {self.what}: {done:,}/{self.total:,} ({rate:.1f}/s, about "
                  f"{(self.total - done) / rate:.0f} s left)", flush=True)  # fmt: skip
            self.last = now
