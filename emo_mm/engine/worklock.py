"""One training run per work dir.

Two runs writing into one work dir would overwrite each other's ``epoch_N.pth`` (the last
writer wins) and mix their logs. ``tools/train.py`` takes a lock in the work dir before it
touches anything there and holds it for the life of the process:

* The lock is an exclusive ``flock`` on ``WORK_DIR/.emo_mm.lock``; the kernel releases it
  when the process ends, however it ends, so the lock of a killed run is stale at once
  and the next run takes it over. The file records who holds it (pid, the process's start
  time, host, command line) for the refusal message.
* Where the file system ignores ``flock``, the record decides: a live process of this host
  with the recorded pid and start time (a reused pid has another start time) holds it.
* Distributed runs take it once, on rank 0. The other ranks touch nothing in the work dir
  until the lock names their own run (same rendezvous address and job), and give up when
  it is held by another run, so they neither race rank 0 nor wait forever.
"""
import atexit
import errno
import json
import os
import os.path as osp
import socket
import sys
import time
from typing import Optional

from .errors import UserError

#: The lock file's name in the work dir (hidden: not a checkpoint, not a log).
LOCK_NAME = '.emo_mm.lock'
#: How long ranks other than 0 wait for rank 0 to take the lock (seconds);
#: ``EMO_MM_LOCK_WAIT`` overrides.
RANK_WAIT_S = 300.0


class WorkDirBusyError(UserError):
    """The work dir is used by another training run."""


def _process_start_ticks(pid: int) -> Optional[int]:
    """The start time of a process in clock ticks since boot (Linux), None if unknown."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(')') + 2:].split()
    return int(fields[19])  # field 22 overall: starttime


def _boot_time() -> Optional[float]:
    try:
        with open('/proc/stat') as f:
            for line in f:
                if line.startswith('btime '):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start_time(pid: int) -> Optional[float]:
    """Wall-clock start time (seconds since the epoch) of a process of this host."""
    ticks, boot = _process_start_ticks(pid), _boot_time()
    if ticks is None or boot is None:
        return None
    return boot + ticks / os.sysconf('SC_CLK_TCK')


def _alive(pid: int, start_ticks: Optional[int]) -> bool:
    """Whether process ``pid`` of this host runs and is the one that started at
    ``start_ticks`` (not a later process that reuses the pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    if start_ticks is None:
        return True
    current = _process_start_ticks(pid)
    return current is None or current == start_ticks


def _rank() -> int:
    for name in ('RANK', 'SLURM_PROCID'):
        if os.environ.get(name, '').isdigit():
            return int(os.environ[name])
    return 0


def run_id(launcher: str = 'none') -> str:
    """What the ranks of one distributed run share and concurrent runs do not: the
    rendezvous address (a port is bound by one run at a time) and the job id."""
    if launcher == 'none':
        return f'{socket.gethostname()}:{os.getpid()}'
    job = os.environ.get('TORCHELASTIC_RUN_ID') or os.environ.get('SLURM_JOB_ID') or ''
    return (f'{os.environ.get("MASTER_ADDR", "")}:{os.environ.get("MASTER_PORT", "")}:'
            f'{job}')


def read_record(path: str) -> dict:
    """The holder recorded in a lock file; {} if there is none or it cannot be read."""
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe(record: dict) -> str:
    """``pid 123 on host h, started 2025-01-01 10:00:00 (tools/train.py ...)``."""
    started = record.get('started')
    when = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started)) if started else '?'
    command = ' '.join(record.get('argv') or [])
    command = command if len(command) <= 120 else command[:117] + '...'
    return (f'pid {record.get("pid", "?")} on host {record.get("host", "?")}, started {when}'
            + (f' ({command})' if command else ''))


class WorkDirLock:
    """The lock of one work dir, held by this process (see the module docstring).

    Args:
        work_dir (str): The run's work dir (created if missing).
        launcher (str): ``'none'``, ``'pytorch'`` or ``'slurm'``, as for the Runner.
    """

    def __init__(self, work_dir: str, launcher: str = 'none'):
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_NAME)
        self.launcher = launcher
        self.run = run_id(launcher)
        self._fd: Optional[int] = None
        self.created_dir = False
        self.took_over: dict = {}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> 'WorkDirLock':
        """Takes the lock (rank 0) or waits until rank 0 of this run holds it (other
        ranks); raises :class:`WorkDirBusyError` naming the run that holds it."""
        if self.launcher != 'none' and _rank() != 0:
            self._wait_for_rank0()
            return self
        if not osp.isdir(self.work_dir):
            os.makedirs(self.work_dir, exist_ok=True)
            self.created_dir = True
        for _ in range(10):  # retried only when the file was replaced under us
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not self._flock(fd):
                    raise self._busy(read_record(self.path))
                if os.fstat(fd).st_ino != _inode(self.path):
                    continue  # released and unlinked between our open and our flock
                previous = read_record(self.path)
                if self._held_by_other(previous):  # a file system that ignores flock
                    raise self._busy(previous)
                self._write(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            self.took_over = previous
            atexit.register(self.release)
            return self
        raise WorkDirBusyError(f'Could not take the lock {self.path}: it keeps being replaced '
                               'by other processes.')

    @staticmethod
    def _flock(fd: int) -> bool:
        import fcntl
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            return True  # no flock on this file system: the record decides
        return True

    def _held_by_other(self, record: dict) -> bool:
        pid = record.get('pid')
        if not isinstance(pid, int) or record.get('host') != socket.gethostname():
            return False
        return pid != os.getpid() and _alive(pid, record.get('start_ticks'))

    def _write(self, fd: int) -> None:
        started = process_start_time(os.getpid())
        record = dict(pid=os.getpid(), host=socket.gethostname(),
                      start_ticks=_process_start_ticks(os.getpid()),
                      started=started if started is not None else time.time(),
                      argv=[osp.basename(sys.executable)] + sys.argv, run=self.run)
        data = json.dumps(record).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    def _busy(self, record: dict) -> WorkDirBusyError:
        who = describe(record) if record else 'a process that left no record'
        return WorkDirBusyError(
            f'The work dir {self.work_dir} is in use by another training run: {who}. Wait for '
            f'it to finish, or train into another --work-dir (if that run is gone, delete '
            f'{self.path}).')

    def _wait_for_rank0(self) -> None:
        deadline = time.time() + float(os.environ.get('EMO_MM_LOCK_WAIT', RANK_WAIT_S))
        while True:
            record = read_record(self.path)
            if record.get('run') == self.run:
                return
            if record and self._held_by_other(record):
                raise self._busy(record)
            if time.time() > deadline:
                raise WorkDirBusyError(
                    f'Rank {_rank()}: rank 0 of this run did not take the lock {self.path} '
                    'in time' + (f' (it is held by {describe(record)})' if record else '')
                    + '. Check the output of rank 0.')
            time.sleep(0.2)

    def release(self) -> None:
        """Gives the lock up (removes the file, and the work dir if this run created it
        and left nothing in it). Safe to call twice."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if read_record(self.path).get('pid') == os.getpid() and \
                    os.fstat(fd).st_ino == _inode(self.path):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)
        if self.created_dir:
            try:
                os.rmdir(self.work_dir)  # only if empty: the run failed before writing
            except OSError:
                pass


def _inode(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


#: The locks this process holds, by absolute work dir.
_held = {}


def lock_work_dir(work_dir: str, launcher: str = 'none') -> WorkDirLock:
    """Takes (or, for other ranks, waits for) the lock of ``work_dir`` for the rest of
    this process; taking it again in the same process is a no-op."""
    key = osp.abspath(work_dir)
    lock = _held.get(key)
    if lock is None or not lock.held and lock.launcher == 'none':
        lock = WorkDirLock(work_dir, launcher).acquire()
        _held[key] = lock
    return lock


def release_work_dir(work_dir: str) -> None:
    lock = _held.pop(osp.abspath(work_dir), None)
    if lock is not None:
        lock.release()


__all__ = ['WorkDirLock', 'WorkDirBusyError', 'lock_work_dir', 'release_work_dir', 'LOCK_NAME']
