from __future__ import annotations

import os
import tempfile


def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (/proc on Linux); elsewhere it is
    set and restored at once (os.umask has no read-only form)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(fd_or_path, executable: bool = False) -> None:
    """Give a file made by mkstemp (always 0600) the mode a plain open() would have given it: 0666 (0777 for a
    shared library) less the umask."""
    mode = (0o777 if executable else 0o666) & ~current_umask()
    if isinstance(fd_or_path, int):
        os.fchmod(fd_or_path, mode)
    else:
        os.chmod(fd_or_path, mode)


def atomic_write(path: str, data: bytes | str, *, executable: bool = False) -> None:
    """Write a file so that readers see either the old file or the complete new one, never a partial one. The file
    gets the user's umask, as if written with open()."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            apply_umask(f.fileno(), executable)
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def cache_dir() -> str:
    d = os.environ.get("PYSOFIE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "pysofie")
    os.makedirs(d, exist_ok=True)
    return d
