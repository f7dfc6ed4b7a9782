"""Where directconv keeps its per-user files: one function per kind, each overridable by an environment variable.

The platform's conventions (XDG on Linux, ~/Library on macOS) come from platformdirs.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "directconv"
CACHE_ENV = "DIRECTCONV_CACHE_DIR"  # compiled kernels
DATA_ENV = "DIRECTCONV_DATA_DIR"  # tuning studies and the host-wide measurement lock
STORE_ENV = "DIRECTCONV_STORE_DIR"  # the config store (tuned configurations)
MACHINES_ENV = "DIRECTCONV_MACHINES_DIR"  # user machine descriptions (`directconv probe` writes there)


class UnsafeDirectoryError(RuntimeError):
    """A folder directconv loads code from is not this user's own."""


def _env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Compiled kernels: $DIRECTCONV_CACHE_DIR, else the platform's user cache folder (~/.cache/directconv)."""
    return _env(CACHE_ENV) or platformdirs.user_cache_path(APP)


def data_dir() -> Path:
    """Tuning studies: $DIRECTCONV_DATA_DIR, else the platform's user data folder (~/.local/share/directconv)."""
    return _env(DATA_ENV) or platformdirs.user_data_path(APP)


def store_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The config store: `override` (a --store option), else $DIRECTCONV_STORE_DIR, else <user data>/tuned."""
    if override:
        return Path(override).expanduser()
    return _env(STORE_ENV) or platformdirs.user_data_path(APP) / "tuned"


def machines_dir() -> Path:
    """User machine descriptions: $DIRECTCONV_MACHINES_DIR, else <user data>/machines. It need not exist."""
    return _env(MACHINES_ENV) or platformdirs.user_data_path(APP) / "machines"


def private_dir(path: Path, env: str = CACHE_ENV) -> Path:
    """Create `path` (and parents) readable and writable by this user only, or check that an existing one is.

    Code is loaded from these folders: one someone else can write to would let them choose the code we run. A
    folder of ours that others may write to is tightened; one owned by another user is refused, naming `env`.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise UnsafeDirectoryError(
            f"folder {path} belongs to uid {st.st_uid}, not to this user (uid {os.getuid()}); directconv loads code "
            f"from it, so it must be yours: set {env} to a folder of your own"
        )
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
