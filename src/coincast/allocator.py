"""The memory allocator training runs on: mimalloc for the `coincast` command, tuned glibc otherwise.

Why: every training step allocates and frees tensors of tens of MB. glibc's malloc hands
that memory back to the kernel (munmap, trimming the shard threads' 64 MB heaps) and the
next step faults it in again, page by page: hundreds of thousands of minor page faults per
epoch of the tutorial network, a large share of its wall time spent in the kernel.

What coincast does about it:
- The `coincast` command, for the commands that train (`run`, `backtest`, `audit`, `live`, `serve`), starts
  itself once more with mimalloc preloaded (`LD_PRELOAD`, the library of the pip package
  `cmeel-mimalloc`, a dependency on Linux) and mimalloc told to keep freed memory
  (`MIMALLOC_PURGE_DELAY=-1`) and to leave transparent huge pages alone
  (`MIMALLOC_ALLOW_THP=0`: huge pages cost more system time in the first epoch than they
  gain later; set the variable yourself to choose). A marker variable makes the
  re-exec happen once; `COINCAST_ALLOCATOR=system` turns it off; a missing library leaves
  the process on glibc, with a note in timing.json.
- In any other process (the Python API, `coincast.Forecaster().fit(...)` in your own
  script), preloading is too late, so the first training tunes glibc instead (`tune()`:
  one heap for all threads, no mmap for large blocks, freed memory kept up to 1 GiB): the
  page faults of later epochs all but vanish, at the price of a higher peak RSS (as with
  mimalloc). `COINCAST_ALLOCATOR=system` turns this off too. For mimalloc in your own
  process, start it with the variables `python -m coincast.allocator env` prints:

      env $(python -m coincast.allocator env) python my_script.py

`describe()` says what the process runs on; timing.json and the benchmark JSON record it.
"""

from __future__ import annotations

import os
import platform
import sys
import sysconfig
from pathlib import Path

from coincast.errors import ConfigError

ENV = "COINCAST_ALLOCATOR"  # mimalloc (the default), system, or the path of a malloc library
MARK = "COINCAST_ALLOCATOR_PRELOADED"  # set for the re-exec'ed process: the library it asked for
MIMALLOC_SETTINGS = {"MIMALLOC_PURGE_DELAY": "-1", "MIMALLOC_ALLOW_THP": "0"}
TRAINING_COMMANDS = ("run", "backtest", "audit", "live", "serve")
KNOWN = ("mimalloc", "jemalloc", "tcmalloc")  # libraries recognised in /proc/self/maps

# glibc's mallopt parameters (malloc.h) and the values tune() sets.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX, M_ARENA_MAX = -1, -2, -4, -8
GLIBC_SETTINGS = {"M_ARENA_MAX": 1, "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 1 << 30, "M_TOP_PAD": 64 << 20}
_PARAMS = {"M_ARENA_MAX": M_ARENA_MAX, "M_MMAP_MAX": M_MMAP_MAX, "M_TRIM_THRESHOLD": M_TRIM_THRESHOLD,
           "M_TOP_PAD": M_TOP_PAD}

_state: dict = {"note": None, "tuned": None}


def choice(env=None) -> str:
    """'mimalloc', 'system' or a library path, from COINCAST_ALLOCATOR; ConfigError if unusable."""
    value = (os.environ if env is None else env).get(ENV, "").strip()
    if value in ("", "mimalloc", "auto"):
        return "mimalloc"
    if value in ("system", "glibc"):
        return "system"
    if "/" in value:
        return value
    raise ConfigError(f"{ENV}={value!r} is not an allocator: use mimalloc (the default), system "
                      f"(the C library's malloc) or the path of a malloc library such as /usr/lib/libjemalloc.so.2")


def mimalloc_path() -> Path | None:
    """libmimalloc.so of the `cmeel-mimalloc` package, wherever it is installed; None if it is not."""
    dirs = [sysconfig.get_paths()[k] for k in ("platlib", "purelib")] + [p for p in sys.path if p]
    for d in dict.fromkeys(dirs):
        lib = Path(d) / "cmeel.prefix" / "lib" / "libmimalloc.so"
        if lib.is_file():
            return lib
    return None


def _library(how: str) -> Path | None:
    return mimalloc_path() if how == "mimalloc" else Path(how)


def trains(args: list[str]) -> bool:
    """Whether a command line (without the program name) is a training command, not a --help."""
    words = [a for a in args if not a.startswith("-")]
    return bool(words) and words[0] in TRAINING_COMMANDS and "--help" not in args


def reexec() -> None:
    """Start this program again, with the allocator preloaded, unless that is done or not wanted.

    Returns only when it does not re-exec (opt-out, already preloaded, library missing, exec
    failed: the reason is kept for timing.json). Call it first thing in a program's entry
    point, never in a process that others share (it replaces the process).
    """
    how = choice()  # a bad value is a user error, raised before anything runs
    if MARK in os.environ:
        return  # this is the re-exec'ed process (or a child of it): never again
    if how == "system":
        _state["note"] = f"{ENV}=system"
        return
    if os.environ.get("LD_PRELOAD"):
        _state["note"] = "LD_PRELOAD was set already: left as it is"
        return
    if not sys.platform.startswith("linux"):
        _state["note"] = f"no preloading on {sys.platform}: the system allocator"
        return
    lib = _library(how)
    if lib is None or not lib.is_file():
        what = "libmimalloc.so (pip package cmeel-mimalloc) not found" if lib is None else f"no file {lib}"
        _state["note"] = f"{what}: glibc instead, tuned at training"
        if how != "mimalloc":  # a path the user named: say so; the package missing stays silent
            print(f"warning: {ENV}: {what}; training on glibc", file=sys.stderr)
        return
    env = {**os.environ, "LD_PRELOAD": str(lib), MARK: str(lib)}
    if "mimalloc" in lib.name:
        env.update({k: v for k, v in MIMALLOC_SETTINGS.items() if k not in os.environ})
    argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError as exc:
        _state["note"] = f"re-exec with {lib} failed ({exc}): glibc instead, tuned at training"


def loaded() -> tuple[str, str] | None:
    """(name, path) of a known malloc replacement mapped into this process, or None."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        path = parts[5] if len(parts) == 6 else ""
        base = os.path.basename(path)
        for name in KNOWN:
            if base.startswith(f"lib{name}"):
                return name, path
    return None


def tune() -> dict | None:
    """Tune glibc's malloc for training (process-wide, once); the settings, or None if not done.

    Not done when COINCAST_ALLOCATOR=system, when another allocator is loaded, or off glibc.
    """
    if _state["tuned"] is not None:
        return _state["tuned"]
    if choice() == "system" or loaded() is not None or platform.libc_ver()[0] != "glibc":
        return None
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    done = {k: v for k, v in GLIBC_SETTINGS.items() if libc.mallopt(_PARAMS[k], v) == 1}
    _state["tuned"] = done
    return done


def describe() -> dict:
    """The allocator of this process, for timing.json: name, library, settings, note."""
    found = loaded()
    note = _state["note"]
    if found:
        name, lib = found
        settings = {k: os.environ[k] for k in os.environ if k.startswith(name.upper() + "_")}
        ours = os.environ.get(MARK) and os.path.realpath(os.environ[MARK]) == os.path.realpath(lib)
        how = "preloaded by the coincast command" if ours else "preloaded (LD_PRELOAD)"
        return {"name": name, "library": lib, "how": how, "settings": settings, "note": note}
    if os.environ.get(MARK):
        note = f"LD_PRELOAD={os.environ[MARK]} did not load (see the ld.so message on stderr): glibc"
    tuned = _state["tuned"]
    return {"name": "glibc" if platform.libc_ver()[0] == "glibc" else "system", "library": None,
            "how": "tuned with mallopt" if tuned else "defaults", "settings": tuned or {}, "note": note}


def main(argv: list[str] | None = None) -> int:
    """`python -m coincast.allocator path|env`: the library, or the variables that preload it."""
    args = sys.argv[1:] if argv is None else argv
    lib = mimalloc_path()
    if args not in (["path"], ["env"]):
        print("usage: python -m coincast.allocator path|env", file=sys.stderr)
        return 2
    if lib is None:
        print("error: libmimalloc.so not found: pip install cmeel-mimalloc", file=sys.stderr)
        return 1
    print(lib if args == ["path"] else " ".join(f"{k}={v}" for k, v in {"LD_PRELOAD": lib, **MIMALLOC_SETTINGS}.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
