#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# tests/e2e/service_notify.py: `detour serve` under a service manager's readiness protocol
# (systemd's Type=notify), the manager played by a Unix datagram socket of this script:
#
#  1. with NOTIFY_SOCKET: READY=1 once the server answers (a handshake and a task pass as soon as
#     it arrives), with the bound address in STATUS; SIGHUP brings RELOADING=1 then READY=1;
#     SIGTERM brings STOPPING=1, and the server exits 0; no warning logged;
#  2. with WATCHDOG_USEC too: WATCHDOG=1 keeps coming while the workers run; none when
#     WATCHDOG_PID names another process (the variables were inherited);
#  3. a NOTIFY_SOCKET that cannot be used (relative, or nobody listening): the server runs and
#     stops as usual, with one service.notify_failed warning saying why;
#  4. docs/examples/detour.service passes `systemd-analyze verify` without a word (when
#     systemd-analyze is installed), its ExecStart pointed at the binary under test.
#
# usage: service_notify.py DETOUR UNIT_FILE
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

DETOUR = os.path.abspath(sys.argv[1])
UNIT = pathlib.Path(sys.argv[2])
failures = []


def check(name, cond, detail=""):
    if not cond:
        failures.append(f"{name}: {detail}")
    return cond


def receive(sock, timeout=15.0):
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).decode()
    except socket.timeout:
        return ""


def start(work, notify_socket, **extra_env):
    env = dict(os.environ)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name, None)
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = notify_socket
    env.update(extra_env)
    log = open(work / "serve.log", "w")
    proc = subprocess.Popen(
        [DETOUR, "serve", "--listen", "127.0.0.1:0", "--state-dir", str(work / "state"),
         "--workers", "2", "--log-level", "info"],
        env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=work)
    return proc


def listening_address(work, proc):
    for _ in range(200):
        m = re.search(r"server\.listening addresses=(\S+)", (work / "serve.log").read_text())
        if m:
            return m.group(1)
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def one_task(work, address):
    p = subprocess.run([DETOUR, "probe", "handshakes", "--server", address, "--ca",
                        str(work / "state" / "ca.pem"), "--tasks", "2", "--deadline", "20s"],
                       capture_output=True, timeout=60)
    return p.returncode == 0, p.stdout.decode() + p.stderr.decode()


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None


def run_with_manager(work):
    name = str(work / "notify")
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(name)
    proc = start(work, name)
    try:
        ready = receive(manager)
        m = re.fullmatch(r"READY=1\nSTATUS=listening on (\S+), 2 workers", ready)
        if not check("READY=1 with the address", m, f"got {ready!r}"):
            return
        address = m.group(1)
        ok, out = one_task(work, address)
        check("a task passes as soon as READY=1 arrives", ok, out)
        check("STATUS names the bound address", address == listening_address(work, proc),
              f"{address} against the log's {listening_address(work, proc)}")

        proc.send_signal(signal.SIGHUP)
        reloading = receive(manager)
        check("SIGHUP: RELOADING=1 with MONOTONIC_USEC",
              re.match(r"RELOADING=1\n.*MONOTONIC_USEC=\d+$", reloading, re.S), repr(reloading))
        again = receive(manager)
        check("SIGHUP: READY=1 again after the reload", again == ready, repr(again))

        proc.send_signal(signal.SIGTERM)
        stopping = receive(manager)
        check("SIGTERM: STOPPING=1", stopping.startswith("STOPPING=1\n"), repr(stopping))
        status = proc.wait(timeout=45)
        check("exit 0 after SIGTERM", status == 0, f"exit {status}")
        log = (work / "serve.log").read_text()
        check("no warning or error logged", not re.search(r"^\S+ (warn|error) ", log, re.M), log)
    finally:
        if proc.poll() is None:
            proc.kill()
        manager.close()


def run_unusable(work, notify_socket, reason):
    proc = start(work, notify_socket)
    try:
        address = listening_address(work, proc)
        if not check(f"{notify_socket}: the server starts", address, "no server.listening"):
            return
        ok, out = one_task(work, address)
        check(f"{notify_socket}: a task passes", ok, out)
        status = stop(proc)
        check(f"{notify_socket}: exit 0 after SIGTERM", status == 0, f"exit {status}")
        warnings = re.findall(r"^\S+ warn\s+service\.notify_failed .*$",
                              (work / "serve.log").read_text(), re.M)
        check(f"{notify_socket}: one service.notify_failed warning", len(warnings) == 1,
              "\n".join(warnings) or "none")
        check(f"{notify_socket}: the warning says why", warnings and reason in warnings[0],
              f"{reason!r} not in {warnings}")
    finally:
        if proc.poll() is None:
            proc.kill()


def run_watchdog(work):
    name = str(work / "notify")
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(name)
    # 300 ms: WATCHDOG=1 is due every 100 ms while both workers' loops turn.
    proc = start(work, name, WATCHDOG_USEC="300000")
    try:
        messages = []
        deadline = time.monotonic() + 15
        while messages.count("WATCHDOG=1") < 3 and time.monotonic() < deadline:
            m = receive(manager, timeout=max(0.1, deadline - time.monotonic()))
            if m:
                messages.append(m)
        check("WATCHDOG=1 keeps coming while the workers run", messages.count("WATCHDOG=1") >= 3,
              repr(messages))
        check("READY=1 first", messages and messages[0].startswith("READY=1\n"), repr(messages))
        log = (work / "serve.log").read_text()
        check("service.watchdog logged with its period", re.search(
            r"service\.watchdog period_ms=300 tick_ms=100", log), log)
        status = stop(proc)
        check("watchdog: exit 0 after SIGTERM", status == 0, f"exit {status}")
    finally:
        if proc.poll() is None:
            proc.kill()
        manager.close()

    # The variables inherited from a parent whose watchdog it is (WATCHDOG_PID=1): none here.
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    (work / "notify").unlink()
    manager.bind(name)
    proc = start(work, name, WATCHDOG_USEC="300000", WATCHDOG_PID="1")
    try:
        ready = receive(manager)
        check("another process's watchdog: READY=1", ready.startswith("READY=1\n"), repr(ready))
        log = (work / "serve.log").read_text()
        check("another process's watchdog is not fed", "service.watchdog" not in log, log)
        status = stop(proc)
        check("another process's watchdog: exit 0", status == 0, f"exit {status}")
        rest = []
        while (m := receive(manager, timeout=0.2)):
            rest.append(m)
        check("another process's watchdog: no WATCHDOG=1 sent", "WATCHDOG=1" not in rest, repr(rest))
    finally:
        if proc.poll() is None:
            proc.kill()
        manager.close()


def verify_unit(work):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("note: systemd-analyze not installed, docs/examples/detour.service not verified")
        return
    unit = work / "detour.service"
    text = UNIT.read_text()
    check("the unit starts /usr/local/bin/detour", "ExecStart=/usr/local/bin/detour serve" in text)
    unit.write_text(text.replace("/usr/local/bin/detour", os.path.abspath(DETOUR)))
    p = subprocess.run([analyze, "verify", str(unit)], capture_output=True, timeout=60)
    said = (p.stdout + p.stderr).decode().strip()
    check("systemd-analyze verify accepts the unit without a word", p.returncode == 0 and not said,
          f"exit {p.returncode}: {said}")


with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    for sub in ("manager", "watchdog", "relative", "nobody", "unit"):
        (tmp / sub).mkdir()
    run_with_manager(tmp / "manager")
    run_watchdog(tmp / "watchdog")
    run_unusable(tmp / "relative", "run/notify", "neither an absolute path nor")
    run_unusable(tmp / "nobody", str(tmp / "nobody" / "absent"), "sending to NOTIFY_SOCKET")
    verify_unit(tmp / "unit")

if failures:
    print(f"{len(failures)} failure(s):")
    for f in failures:
        print(" -", f)
    sys.exit(1)
print("service notifications: all checks passed")
