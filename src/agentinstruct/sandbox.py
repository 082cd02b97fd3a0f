"""Run untrusted Python (code blocks in teacher answers) in real isolation, without a container
runtime.

Levels, best first (``detect_isolation``):

* ``bwrap``: bubblewrap, where it is on PATH and works.
* ``unshare``: util-linux ``unshare`` (new user, network, mount, PID, IPC and UTS namespaces)
  plus a short ``sh`` setup script that builds a fresh root from read-only binds.
* ``none``: no namespaces; only a scrubbed environment and resource limits. The tool gate refuses
  to run code at this level unless the recipe opts in (``gates.tools.allow_unisolated``).

With namespaces the code sees: no network (a new network namespace whose only interface is its
own ``lo``, down with ``unshare``: no connect to the host or beyond, no name resolution), a read-only system (``/usr``, ``/etc`` and the
interpreter's prefix), one fresh size-limited writable tmpfs as ``/tmp`` and cwd, an empty home,
a fresh ``/proc`` of its own PID namespace (the parent's ``/proc/<pid>/environ`` does not exist
there), an environment of only ``PATH``, no capabilities and ``no_new_privs``. When the caller
runs as root the sandbox first drops to an unprivileged host uid (``nobody``): the kernel
exempts host root from ``RLIMIT_NPROC``, so without this a fork bomb would not be bounded. The
process limit then counts only the processes of this sandbox's user namespace. At the deadline
the whole session is killed; the code's first process is the init of its PID namespace, so its
death takes every process in it along (a double-forked daemon included).
"""

from __future__ import annotations

import functools
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agentinstruct.redact import redact_secrets

Isolation = Literal["bwrap", "unshare", "none"]
NAMESPACED: tuple[Isolation, ...] = ("bwrap", "unshare")
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
# parts of the host system the code may read (never written); absent ones are skipped
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEVICES = ("null", "zero", "full", "random", "urandom")
SETUP_FAILED = 125  # exit status of the setup script when building the sandbox failed
SETUP_MARK = "agentinstruct-sandbox-setup-failed"


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one run (wall time and memory are given per run)."""

    max_processes: int = 32  # RLIMIT_NPROC inside the sandbox's own user namespace
    tmp_mb: int = 64  # size of the writable /tmp (a tmpfs: nothing reaches the host disk)
    file_mb: int = 16  # RLIMIT_FSIZE: bounds any one file, stdout and stderr included
    output_kb: int = 64  # how much of stdout / stderr is read back
    unprivileged_uid: int = 65534  # host uid the sandbox runs as when the caller is root


@dataclass
class SandboxResult:
    """The outcome of one run. ``stdout``, ``stderr`` and ``reason`` are already redacted."""

    ok: bool
    stdout: str
    stderr: str
    reason: str  # "" when ok: "timed out", the last line of the error, or "exit code N"
    timed_out: bool = False
    returncode: int | None = None


def _interpreter() -> tuple[str, str]:
    """The real base interpreter (not a venv's symlink) and the prefix holding its stdlib."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


def _covered(path: str, dirs: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


class Sandbox:
    """Runs Python code at the given isolation level (default: the best the machine offers)."""

    def __init__(self, level: Isolation | None = None, limits: SandboxLimits | None = None):
        self.level: Isolation = level or detect_isolation()
        self.limits = limits or SandboxLimits()
        self.python, self.prefix = _interpreter()

    @property
    def isolated(self) -> bool:
        return self.level in NAMESPACED

    # -- command lines -------------------------------------------------------------------------

    def _inner(self, timeout_s: float, memory_mb: int) -> list[str]:
        """What runs once the namespaces and the new root exist: as host root, become the
        unprivileged uid and give it a user namespace of its own (the process limit counts the
        processes of that namespace only); then limits, no capabilities, and the interpreter."""
        own_userns: list[str] = []
        if os.geteuid() == 0:
            uid = str(self.limits.unprivileged_uid)
            own_userns = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                          "unshare", "--user", "--map-root-user", "--"]
        drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]
        return own_userns + self._prlimit(timeout_s, memory_mb) + drop + self._python()

    def _prlimit(self, timeout_s: float, memory_mb: int) -> list[str]:
        lim = self.limits
        return ["prlimit", f"--nproc={lim.max_processes}", f"--as={memory_mb * 2**20}",
                f"--cpu={max(1, math.ceil(timeout_s))}", f"--fsize={lim.file_mb * 2**20}", "--core=0", "--"]

    def _python(self) -> list[str]:
        return [self.python, "-I", "-S", "-B", "-"]  # the program comes on stdin

    def _system(self) -> tuple[list[tuple[str, str]], list[str]]:
        """(symlinks to recreate, dirs to bind read-only): the host system plus the dirs the
        interpreter needs outside it (e.g. a pyenv prefix under /root)."""
        links, dirs = [], []
        for d in SYSTEM_DIRS:
            if os.path.islink(d):
                links.append((os.readlink(d), d))
            elif os.path.isdir(d):
                dirs.append(d)
        for d in (self.prefix, os.path.dirname(self.python)):
            if not _covered(d, dirs):
                dirs.append(d)
        return links, dirs

    def _unshare_argv(self, timeout_s: float, memory_mb: int) -> list[str]:
        links, dirs = self._system()
        root = "/tmp"  # mount point of the new root, inside the private mount namespace only
        q = shlex.quote
        devs = [f"dev/{d}" for d in DEVICES]
        steps = [f"mount -t tmpfs -o mode=755,size=1m sandbox-root {root}", f"cd {root}",
                 shlex.join(["mkdir", "-p", "proc", "dev", "tmp", *(f".{d}" for d in dirs)]),
                 shlex.join(["touch", *devs])]
        steps += [shlex.join(["ln", "-s", target, f".{link}"]) for target, link in links]
        for d in dirs:  # recursive: a userns may not bind a tree without its locked submounts
            steps += [f"mount --rbind {q(d)} .{q(d)}", f"mount -o remount,bind,ro .{q(d)}"]
        steps += [f"mount --bind /{dev} {dev}" for dev in devs]
        steps += ["mount -t proc proc proc",
                  f"mount -t tmpfs -o mode=1777,size={self.limits.tmp_mb}m sandbox-tmp tmp",
                  "mount -o remount,ro .", "pivot_root . .", "umount -l .", "cd /tmp"]
        script = " && ".join(steps) + f" || {{ echo {SETUP_MARK} >&2; exit {SETUP_FAILED}; }}\n"
        script += "exec " + shlex.join(self._inner(timeout_s, memory_mb))
        userns = ["--user", "--map-root-user"] if os.geteuid() != 0 else []
        return ["unshare", *userns, "--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
                "--", "/bin/sh", "-c", script]

    def _bwrap_argv(self, timeout_s: float, memory_mb: int) -> list[str]:
        links, dirs = self._system()
        # as root, no user namespace here: ``_inner`` makes one for the unprivileged uid
        spaces = (["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
                  if os.geteuid() == 0 else ["--unshare-all"])
        argv = ["bwrap", *spaces, "--die-with-parent", "--new-session", "--clearenv", "--setenv", "PATH", SANDBOX_PATH]
        for target, link in links:
            argv += ["--symlink", target, link]
        made: set[str] = set()
        for d in dirs:
            for parent in reversed(Path(d).parents[:-1]):  # traversable by the unprivileged uid
                if str(parent) not in made:
                    made.add(str(parent))
                    argv += ["--perms", "0755", "--dir", str(parent)]
            argv += ["--ro-bind", d, d]
        argv += ["--dev", "/dev", "--proc", "/proc", "--size", str(self.limits.tmp_mb * 2**20),
                 "--perms", "1777", "--tmpfs", "/tmp", "--chdir", "/tmp", "--"]
        return argv + self._inner(timeout_s, memory_mb)

    def argv(self, timeout_s: float, memory_mb: int) -> list[str]:
        """The command line that runs a program (given on stdin) at this level."""
        if self.level == "bwrap":
            return self._bwrap_argv(timeout_s, memory_mb)
        if self.level == "unshare":
            return self._unshare_argv(timeout_s, memory_mb)
        if shutil.which("prlimit"):  # limits without preexec_fn, which is unsafe in threads
            return self._prlimit(timeout_s, memory_mb) + self._python()
        return self._python()

    # -- running -------------------------------------------------------------------------------

    def _preexec(self, timeout_s: float, memory_mb: int):
        """Resource limits at level ``none`` where ``prlimit`` is missing (unsafe with threads)."""
        import resource

        lim = self.limits

        def apply() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20,) * 2)
            resource.setrlimit(resource.RLIMIT_CPU, (max(1, math.ceil(timeout_s)),) * 2)
            resource.setrlimit(resource.RLIMIT_NPROC, (lim.max_processes,) * 2)
            resource.setrlimit(resource.RLIMIT_FSIZE, (lim.file_mb * 2**20,) * 2)

        return apply

    def run(self, code: str, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
        """Run ``code`` with a wall-clock limit; the result's texts are redacted of secrets."""
        with tempfile.TemporaryDirectory(prefix="agentinstruct-sandbox-") as host_tmp:
            return self._run(code, timeout_s, memory_mb, Path(host_tmp))

    def _run(self, code: str, timeout_s: float, memory_mb: int, host_tmp: Path) -> SandboxResult:
        src, out, err = (host_tmp / n for n in ("code.py", "stdout", "stderr"))
        src.write_text(code, encoding="utf-8")
        kwargs: dict = {}
        if not self.isolated:
            kwargs["cwd"] = host_tmp
            if not shutil.which("prlimit"):
                kwargs["preexec_fn"] = self._preexec(timeout_s, memory_mb)
        with src.open("rb") as stdin, out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(self.argv(timeout_s, memory_mb), stdin=stdin, stdout=stdout,
                                    stderr=stderr, env={"PATH": SANDBOX_PATH},
                                    start_new_session=True, **kwargs)
            expired = threading.Event()  # a timer, not wait(timeout=): that polls in 50 ms steps

            def expire() -> None:
                expired.set()
                _kill_group(proc.pid)

            timer = threading.Timer(timeout_s, expire)
            timer.start()
            try:
                rc = proc.wait()
            finally:
                timer.cancel()
            _kill_group(proc.pid)  # whatever is left in the session (at level "none")
            timed_out = expired.is_set()
        texts = [redact_secrets(_head(p, self.limits.output_kb)) for p in (out, err)]
        return _result(rc, timed_out, *texts)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _head(path: Path, kb: int) -> str:
    with path.open("rb") as f:
        return f.read(kb * 1024).decode("utf-8", errors="replace")


def _result(rc: int, timed_out: bool, stdout: str, stderr: str) -> SandboxResult:
    if timed_out or rc in (-signal.SIGKILL, -signal.SIGXCPU):  # wall clock / CPU-time limit
        return SandboxResult(False, stdout, stderr, "timed out", True, rc)
    if rc == SETUP_FAILED and SETUP_MARK in stderr:
        lines = [ln for ln in stderr.strip().splitlines() if ln != SETUP_MARK]
        return SandboxResult(False, stdout, stderr, "sandbox setup failed: " + _last_line("\n".join(lines), rc),
                             False, rc)
    if rc != 0:
        return SandboxResult(False, stdout, stderr, _last_line(stderr, rc), False, rc)
    return SandboxResult(True, stdout, stderr, "", False, rc)


def _last_line(stderr: str, rc: int) -> str:
    return (stderr.strip().splitlines() or [f"exit code {rc}"])[-1][:200]


# a working sandbox has a fresh PID namespace (its /proc shows its own one or two processes)
PROBE = "import os\nprint('sandbox-ok', sum(p.isdigit() for p in os.listdir('/proc')) <= 3)"


def _works(level: Isolation) -> bool:
    tools = {"bwrap": ["bwrap", "prlimit", "setpriv"], "unshare": ["unshare", "prlimit", "setpriv", "mount"]}
    if os.geteuid() == 0:
        tools["bwrap"].append("unshare")  # the unprivileged uid's own user namespace
    if not all(shutil.which(t) for t in tools[level]):
        return False
    res = Sandbox(level).run(PROBE, timeout_s=10)
    return res.ok and res.stdout.split() == ["sandbox-ok", "True"]


@functools.cache
def detect_isolation() -> Isolation:
    """The best isolation this machine offers, probed once per process by a real run."""
    for level in NAMESPACED:
        if _works(level):
            return level
    return "none"
