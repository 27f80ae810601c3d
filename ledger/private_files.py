"""Files that hold key material: mode 0600, created exclusively, replaced atomically.

Shared by the keyring (``ledger/crypto.py``), the checkpoint signing keys
(``ledger/signing_keys.py``) and the server's credentials file (``ledger/auth.py``).
Every function names the file by a ``label`` ("keyring", "signing key file") and
raises the caller's error type, with messages that name the path and never the
content; `publish_new_private_file` alone lets the system's ``OSError`` through, for
a caller whose own callers expect one.

* A new file is written under a temporary name with ``O_CREAT | O_EXCL`` and mode 0600,
  fsynced, then hard-linked to its final name: the link fails if the name exists, so
  two creators never overwrite each other and no reader sees a half-written file. A
  missing parent directory is created with mode 0700.
* A file is read only after checking, on the open descriptor, that it is a regular file
  that grants group and others no permission bit (the owner is not checked, because
  tests and containers often run as root).
* A replacement is written the same way and renamed over the old file.
* Read-modify-write cycles hold an exclusive ``flock`` on ``<path>.lock``, waiting a
  bounded time for it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pathlib
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from typing import Final

FILE_MODE: Final = 0o600
DIRECTORY_MODE: Final = 0o700
PERMISSION_BITS_FORBIDDEN: Final = stat.S_IRWXG | stat.S_IRWXO
LOCK_ATTEMPT_COUNT_MAX: Final = 200
LOCK_RETRY_INTERVAL_SECONDS: Final = 0.025

ErrorFactory = Callable[[str], Exception]
"""Builds the caller's exception from a message (e.g. ``KeyringError``)."""


def fsync_directory(directory: pathlib.Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_new_private_file(path: pathlib.Path, content: bytes) -> None:
    """Create ``path`` exclusively with mode 0600, write ``content`` and fsync it."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)  # the umask may have removed owner bits
        with os.fdopen(descriptor, "wb", closefd=False) as stream:
            stream.write(content)
            stream.flush()
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def temporary_sibling(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")


def read_private_file(
    path: pathlib.Path, *, label: str, size_bytes_max: int, error: ErrorFactory
) -> bytes:
    """Read ``path`` after checking, on the open descriptor, that it is private."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{label} {path} does not exist") from None
    except OSError as cause:
        raise error(f"{label} {path} cannot be opened: {cause.strerror}") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise error(f"{label} {path} is not a regular file")
        if status.st_mode & PERMISSION_BITS_FORBIDDEN:
            raise error(
                f"{label} {path} has mode {stat.S_IMODE(status.st_mode):04o}; "
                "it must not be accessible by group or others (chmod 600)"
            )
        if status.st_size > size_bytes_max:
            raise error(f"{label} {path} is larger than {size_bytes_max} bytes")
        with os.fdopen(descriptor, "rb", closefd=False) as stream:
            return stream.read(size_bytes_max + 1)
    except OSError as cause:
        raise error(f"{label} {path} cannot be read: {cause.strerror}") from None
    finally:
        os.close(descriptor)


def publish_new_private_file(path: pathlib.Path, content: bytes) -> bool:
    """Publish ``content`` at ``path`` unless the name exists; whether this call published
    it. The parent directory must exist; a failure raises the system's ``OSError``."""
    temporary = temporary_sibling(path)
    try:
        write_new_private_file(temporary, content)
        try:
            os.link(temporary, path)
            published = True
        except FileExistsError:
            published = False
        fsync_directory(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return published


def create_private_file(
    path: pathlib.Path, content: bytes, *, label: str, error: ErrorFactory
) -> bool:
    """Publish ``content`` at ``path`` unless the name exists; whether this call published it.
    A missing parent directory is created (mode 0700)."""
    try:
        path.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    except OSError as cause:
        raise error(f"{label} directory {path.parent} cannot be created: {cause}") from None
    try:
        return publish_new_private_file(path, content)
    except OSError as cause:
        raise error(f"{label} {path} cannot be created: {cause.strerror}") from None


def replace_private_file(
    path: pathlib.Path, content: bytes, *, label: str, error: ErrorFactory
) -> None:
    """Atomically replace the file at ``path`` by a new private file holding ``content``."""
    temporary = temporary_sibling(path)
    try:
        write_new_private_file(temporary, content)
        os.replace(temporary, path)
        fsync_directory(path.parent)
    except OSError as cause:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise error(f"{label} {path} cannot be written: {cause.strerror}") from None


@contextlib.contextmanager
def exclusive_lock(path: pathlib.Path, *, label: str, error: ErrorFactory) -> Iterator[None]:
    """Hold an exclusive flock on ``<path>.lock``, giving up after a bounded wait."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as cause:
        raise error(f"{label} lock {lock_path} cannot be opened: {cause.strerror}") from None
    try:
        for _attempt in range(LOCK_ATTEMPT_COUNT_MAX):
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as cause:
                if cause.errno not in (errno.EAGAIN, errno.EACCES):
                    raise error(
                        f"{label} lock {lock_path} cannot be taken: {cause.strerror}"
                    ) from None
                time.sleep(LOCK_RETRY_INTERVAL_SECONDS)
        else:
            raise error(f"{label} lock {lock_path} is held by another process")
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock
