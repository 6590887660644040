"""A one-line progress bar for the demo's long steps (data, pretraining, training)."""
import sys
import time
from typing import Optional, TextIO


class ProgressBar:
    """Counts work done and shows it on one line, with the time elapsed and left.

    On a terminal the line is redrawn in place; elsewhere (logs, CI, captured output) a line
    is printed at each tenth of the work and at the end, so logs stay short.

    Args:
        total (int): Units of work in all.
        label (str): Printed before the bar. Defaults to ``''``.
        unit (str): Name of a unit of work, printed after the count. Defaults to ``'iters'``.
        width (int): Bar width in characters. Defaults to 30.
        stream (TextIO, optional): Where to print. Defaults to ``sys.stdout`` at each print.
        initial (int): Units already done when the bar starts (a resumed training); the
            time left is estimated from the units done since. Defaults to 0.
    """

    def __init__(self, total: int, label: str = '', unit: str = 'iters', width: int = 30,
                 stream: Optional[TextIO] = None, initial: int = 0):
        if total < 1:
            raise ValueError(f'ProgressBar needs a total of at least 1, got {total}.')
        self.total = total
        self.label = label
        self.unit = unit
        self.width = width
        self.stream = stream
        self.done = self._initial = initial
        self._start = time.time()
        self._last_tenth = -1

    def update(self, count: int = 1, info: str = '') -> None:
        """Adds ``count`` units of work done; ``info`` is shown after the count."""
        self.done = min(self.total, self.done + count)
        stream = self.stream or sys.stdout
        elapsed = time.time() - self._start
        since = self.done - self._initial
        left = elapsed / since * (self.total - self.done) if since else 0.
        filled = self.width * self.done // self.total
        line = (f'{self.label + " " if self.label else ""}'
                f'[{"#" * filled}{"." * (self.width - filled)}] '
                f'{self.done}/{self.total} {self.unit}  {info + "  " if info else ""}'
                f'{elapsed:.0f}s elapsed, ~{left:.0f}s left')
        finished = self.done == self.total
        if stream.isatty():
            print('\r' + line, end='\n' if finished else '', flush=True, file=stream)
        elif self.done * 10 // self.total != self._last_tenth or finished:
            self._last_tenth = self.done * 10 // self.total
            print(line, flush=True, file=stream)
