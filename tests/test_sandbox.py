"""The Python sandbox of the tool gate: every attack of issue 13 is blocked and reported, the
host and the run keep working; detection says which isolation is in use and a machine without
namespaces is refused unless the recipe opts in; whatever the sandbox returns is redacted.

The attack tests run the real sandbox (the best level this machine offers) and skip, saying
so, where the machine offers no namespaces at all. The canary they look for has a name and a
value that redaction does not touch, so they fail if the isolation itself breaks."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from agentinstruct.generate import gates_config as cfgs
from agentinstruct.generate.tools import check_code
from agentinstruct.generate.verify import open_sandbox

from agentinstruct import sandbox as sb
from agentinstruct.recipes import RecipeError
from agentinstruct.redact import REDACTED, add_secret_names, is_secret_name, redact_secrets, redact_value

LEVEL = sb.detect_isolation()
AVAILABLE = [level for level in sb.NAMESPACED if sb._works(level)]  # each one this machine has
isolated = pytest.mark.skipif(LEVEL == "none", reason="this machine offers no namespace isolation")


@pytest.fixture(params=AVAILABLE or ["none"])
def box(request) -> sb.Sandbox:
    """A sandbox of each namespaced level that works here (the attacks run against each)."""
    return sb.Sandbox(request.param)


@pytest.fixture
def canary(monkeypatch) -> str:
    """A value in this process's environment under a name that redaction leaves alone."""
    value = "canary" + secrets.token_hex(12)
    monkeypatch.setenv("AGENTINSTRUCT_CANARY", value)
    return value


def _gone(marker: str, within_s: float = 5.0) -> bool:
    """No process on the host has ``marker`` in its command line (pgrep -f, without procps),
    within ``within_s``: SIGKILLed processes of a dying PID namespace take a moment to exit."""
    deadline = time.monotonic() + within_s
    while True:
        alive = False
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                alive = True
                break
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@isolated
def test_level_is_namespaced_and_overhead_is_small(box):
    assert box.isolated and box.level in sb.NAMESPACED
    start = time.monotonic()
    for _ in range(3):
        assert box.run("print(6 * 7)").stdout == "42\n"
    assert (time.monotonic() - start) / 3 < 1.0  # about 60 ms on an idle 2-core machine


@isolated
@pytest.mark.parametrize("how", ["host_pid", "ppid", "pid_1", "scan_proc"])
def test_attack_read_parent_environ(box, canary, how):
    code = f"""
import os
paths = {{"host_pid": ["/proc/{os.getpid()}/environ"], "ppid": [f"/proc/{{os.getppid()}}/environ"],
         "pid_1": ["/proc/1/environ"],
         "scan_proc": [f"/proc/{{p}}/environ" for p in os.listdir("/proc") if p.isdigit()]}}[{how!r}]
seen = []
for p in paths:
    try:
        seen.append(open(p, "rb").read().decode(errors="replace"))
    except OSError as e:
        seen.append(type(e).__name__)
print(len([p for p in os.listdir("/proc") if p.isdigit()]), seen)
"""
    res = box.run(code)
    assert res.ok, res.reason
    assert canary not in res.stdout
    assert int(res.stdout.split()[0]) <= 2  # a fresh /proc: only the sandbox's own processes


@isolated
def test_attack_environment_is_empty(box, canary):
    res = box.run("import os; print(sorted(os.environ))")
    assert res.ok and canary not in res.stdout
    assert set(eval(res.stdout)) <= {"PATH", "PWD", "OLDPWD", "LC_CTYPE", "SHLVL", "_"}


@isolated
def test_attack_socket_to_host_listener(box):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.1)
    got: list[bytes] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            got.append(conn.recv(100) or b"(connected)")
            conn.close()

    t = threading.Thread(target=accept)
    t.start()
    port = listener.getsockname()[1]
    res = box.run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                  "s.sendall(b'leaked secret')\n")
    done.set()
    t.join()
    listener.close()
    # its own network namespace: lo down (unshare) or a private lo (bwrap); never the host's
    assert not res.ok and ("Network is unreachable" in res.reason or "Connection refused" in res.reason), res.reason
    assert got == []


@isolated
def test_attack_name_resolution_and_interfaces(box):
    res = box.run("""
import socket
try:
    socket.getaddrinfo("example.com", 443)
    print("resolved")
except OSError as e:
    print("no dns", type(e).__name__)
print([name for _, name in socket.if_nameindex()])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.connect(("1.1.1.1", 53))
    print("route")
except OSError as e:
    print("no route", e.errno)
""")
    assert res.ok, res.reason
    lines = res.stdout.splitlines()
    assert lines[0].startswith("no dns") and lines[1] == "['lo']" and lines[2].startswith("no route")


@isolated
def test_attack_write_outside_temp_dir(box, tmp_path):
    host_dir = tmp_path / "writable"
    host_dir.mkdir()
    host_dir.chmod(0o777)
    targets = [host_dir / "escape.txt", Path("/usr/escape.txt"), Path("/etc/escape.txt"),
               Path("/escape.txt"), Path("/dev/shm/escape.txt"), Path.home() / "escape.txt"]
    res = box.run(f"""
import os
for p in {[str(p) for p in targets]!r}:
    try:
        open(p, "w").write("x")
        print(p, "written")
    except OSError as e:
        print(p, type(e).__name__)
open("inside.txt", "w").write("fine")
print(os.getcwd(), open("inside.txt").read())
""")
    assert res.ok, res.reason
    lines = res.stdout.splitlines()
    assert all("written" not in line for line in lines[:-1]), lines
    assert lines[-1] == "/tmp fine"  # the one writable place: a fresh tmpfs as cwd
    assert not any(p.exists() for p in targets)


@isolated
def test_attack_read_home(box):
    home = Path.home()
    canary = home / f".agentinstruct-canary-{secrets.token_hex(6)}"
    canary.write_text("home secret")
    try:
        res = box.run(f"""
for p in [{str(canary)!r}, "/root/.bashrc", "/root/.ssh/id_rsa"]:
    try:
        print(open(p).read())
    except OSError as e:
        print(type(e).__name__)
import os
try:
    print(sorted(os.listdir({str(home)!r})))
except OSError as e:
    print(type(e).__name__)
""")
    finally:
        canary.unlink()
    assert res.ok, res.reason
    assert "home secret" not in res.stdout and canary.name not in res.stdout
    assert res.stdout.splitlines()[:3] == ["FileNotFoundError"] * 3


@isolated
def test_attack_subprocess_is_contained(box, canary):
    res = box.run(f"""
import subprocess
r = subprocess.run(["/bin/sh", "-c", "cat /proc/{os.getpid()}/environ; ls /proc; echo x > /usr/escape.txt"],
                   capture_output=True, text=True)
print(r.stdout, r.stderr)
""")
    assert res.ok, res.reason
    assert canary not in res.stdout
    assert "No such file" in res.stdout and ("Read-only" in res.stdout or "Permission denied" in res.stdout)
    assert not Path("/usr/escape.txt").exists()


@isolated
def test_attack_fork_bomb_is_bounded_and_host_keeps_working(box):
    box = sb.Sandbox(box.level, limits=sb.SandboxLimits(max_processes=8))
    marker = f"{secrets.randbelow(10**6) + 1}.{secrets.randbelow(10**6)}"
    res = box.run(f"""
import os
n = 0
try:
    for _ in range(1000):
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", "{marker}"])
        n += 1
except OSError as e:
    print("stopped", n, type(e).__name__)
""", timeout_s=10)
    assert res.ok, res.reason
    word, n, err = res.stdout.split()
    assert word == "stopped" and int(n) < 8 and err == "BlockingIOError"
    assert _gone(f"sleep {marker}")  # the PID namespace died with its init
    assert box.run("print('still fine')").stdout == "still fine\n"
    assert subprocess.run(["true"]).returncode == 0


@isolated
@pytest.mark.parametrize("main", ["exits", "hangs"])
def test_attack_double_forked_daemon_is_killed(box, main):
    marker = f"{secrets.randbelow(10**6) + 1}.{secrets.randbelow(10**6)}"
    res = box.run(f"""
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "{marker}"])
    os._exit(0)
time.sleep(0.3)
{"time.sleep(60)" if main == "hangs" else "print('main done')"}
""", timeout_s=2)
    assert res.timed_out == (main == "hangs")
    time.sleep(0.2)
    assert _gone(f"sleep {marker}")


def test_timeout_is_reported_as_timeout(box):
    start = time.monotonic()
    res = box.run("while True:\n    pass\n", timeout_s=1)
    assert not res.ok and res.timed_out and res.reason == "timed out"
    assert time.monotonic() - start < 4


def test_memory_hog_is_stopped(box):
    res = box.run("x = bytearray(2 * 1024**3)\nprint('allocated')", memory_mb=256)
    assert not res.ok and "MemoryError" in res.reason and "allocated" not in res.stdout


def test_sandbox_output_is_redacted(box, monkeypatch):
    """Code cannot read the secret, but a model that knows it could write it into the code."""
    secret = "s3cr3t-" + secrets.token_hex(8)
    monkeypatch.setenv("SOME_SERVICE_TOKEN", secret)
    res = box.run(f"print({secret!r})\nraise ValueError('key sk-' + 'A' * 24)")
    assert secret not in res.stdout and REDACTED in res.stdout
    assert res.reason == f"ValueError: key {REDACTED}"
    reason = check_code(f"```python\nraise RuntimeError({secret!r})\n```", 5, box)
    assert reason == f"sandbox: code fails: RuntimeError: {REDACTED}"


# -- detection and the opt-in ----------------------------------------------------------------


def test_unisolated_machine_is_refused_without_opt_in(monkeypatch):
    monkeypatch.setattr(sb, "detect_isolation", lambda: "none")
    with pytest.raises(RecipeError, match="allow_unisolated"):
        open_sandbox(cfgs.ToolGate())
    lines: list[str] = []
    box = open_sandbox(cfgs.ToolGate(allow_unisolated=True), log=lines.append)
    assert box.level == "none" and not box.isolated and "'none'" in lines[0]
    assert box.run("print(1)").ok  # opted in: it runs, unisolated
    assert open_sandbox(cfgs.ToolGate(sandbox=False)) is None  # no sandbox, nothing to refuse


def test_generate_refuses_before_any_model_loads(monkeypatch, tmp_path, repo):
    from agentinstruct.generate.config import GenerateRecipe
    from agentinstruct.generate.engine import GenerationRun

    monkeypatch.setattr(sb, "detect_isolation", lambda: "none")
    recipe = GenerateRecipe.model_validate({
        "teacher": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "nowhere"},
        "input": str(repo / "examples/docs"), "output": str(tmp_path / "out"), "skills": ["open_domain_qa"]})
    with pytest.raises(RecipeError, match="gates.tools.sandbox"):
        GenerationRun(recipe, show_progress=False)


@isolated
def test_isolation_level_is_said_at_start(tmp_path, repo):
    import io

    from agentinstruct.generate.config import GenerateRecipe
    from agentinstruct.generate.engine import GenerationRun
    from rich.console import Console

    log = io.StringIO()
    recipe = GenerateRecipe.model_validate({
        "teacher": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "nowhere"},
        "input": str(repo / "examples/docs"), "output": str(tmp_path / "out"), "skills": ["open_domain_qa"]})
    GenerationRun(recipe, console=Console(file=log), show_progress=False)
    assert f"tool gate sandbox: isolation {LEVEL!r}" in log.getvalue()


def test_detection_falls_back_to_none_without_tools(monkeypatch):
    monkeypatch.setattr(sb.shutil, "which", lambda name: None)
    sb.detect_isolation.cache_clear()
    try:
        assert sb.detect_isolation() == "none"
    finally:
        sb.detect_isolation.cache_clear()


# -- redaction ---------------------------------------------------------------------------------


def test_redact_secret_env_values_and_token_shapes():
    env = {"OPENAI_API_KEY": "plain-value-123", "HF_TOKEN": "hf-like-value-456", "MY_PASSWORD": "hunter2hunter2",
           "SHORT_KEY": "abc", "HOME": "/home/someone", "CUSTOM_LLM": "custom-secret-789"}
    text = ("a plain-value-123 b hf-like-value-456 c hunter2hunter2 d abc e /home/someone f custom-secret-789 "
            "g sk-proj-" + "x" * 20 + " h hf_" + "y" * 30 + " i ghp_" + "z" * 36 + " j AKIA" + "A" * 16)
    out = redact_secrets(text, env)
    for gone in ("plain-value-123", "hf-like-value-456", "hunter2hunter2", "sk-proj", "hf_y", "ghp_", "AKIA"):
        assert gone not in out
    assert " abc " in out and "/home/someone" in out and "custom-secret-789" in out  # not secret-like
    assert [n for n in ("GIT_AUTHOR_NAME", "KEYBOARD_LAYOUT", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN",
                        "DB_PASSWD", "SSH_AUTH_SOCK", "CLIENTSECRET") if is_secret_name(n)] == \
        ["AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "DB_PASSWD", "SSH_AUTH_SOCK", "CLIENTSECRET"]
    add_secret_names("CUSTOM_LLM")  # e.g. a recipe's api_key_env
    assert "custom-secret-789" not in redact_secrets(text, env)
    row = {"messages": [{"role": "user", "content": "key plain-value-123"}], "n": 3}
    assert redact_value(row, env) == {"messages": [{"role": "user", "content": f"key {REDACTED}"}], "n": 3}
    assert redact_value({"a": "nothing here"}, env) == {"a": "nothing here"}
