"""A private PostgreSQL server for the cluster-mode tests: initdb in a temp dir,
`postgres` on a free loopback port with its socket in that dir, readiness by
polling a real connection (pg_isready), stopped at teardown. Never the system
service, never a fixed port. PostgreSQL refuses to run as root, so under root
(CI) the server runs as the `postgres` user in a dir it owns (Popen's user=,
not runuser: a wrapper would stop itself along with a SIGSTOPped server).
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

START_TIMEOUT = 60.0


def _bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "postgres")):
            return d
    return None


BINDIR = _bindir()


def available():
    return BINDIR is not None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster with database `tokengate`; url() is what
    store.postgres.url takes. stop()/start() keep the data, kill()/pause()/resume()
    simulate a crashed or hung server."""

    def __init__(self):
        if not available():
            raise RuntimeError("PostgreSQL is not installed (scripts/setup.sh installs postgresql-15)")
        self.dir = tempfile.mkdtemp(prefix="tokengate-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.as_root = os.geteuid() == 0
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        self.proc = None
        self._run([os.path.join(BINDIR, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                   "--no-sync", "-E", "UTF8"])
        self.start()
        self.psql("CREATE DATABASE tokengate", db="postgres")

    def _as_server_user(self):
        if not self.as_root:
            return {}
        pw = pwd.getpwnam("postgres")
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "cwd": self.dir}

    def _run(self, cmd):
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=120, **self._as_server_user())
        if r.returncode != 0:
            raise RuntimeError("%s failed: %s" % (" ".join(cmd), r.stderr.decode(errors="replace")))
        return r

    def url(self, db="tokengate", **params):
        query = "&".join("%s=%s" % kv for kv in params.items())
        return "postgresql://postgres@127.0.0.1:%d/%s%s" % (self.port, db, ("?" + query) if query else "")

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BINDIR, "postgres"), "-D", self.data, "-p", str(self.port), "-k", self.dir,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, **self._as_server_user())
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited %s:\n%s" % (self.proc.returncode, self.log_tail()))
            r = subprocess.run([os.path.join(BINDIR, "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
                               capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("postgres did not accept connections within %ss:\n%s" % (START_TIMEOUT, self.log_tail()))

    def log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-30:])
        except OSError:
            return ""

    def psql(self, sql, db="tokengate"):
        r = subprocess.run([os.path.join(BINDIR, "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1",
                            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql %r failed: %s" % (sql, r.stderr.decode(errors="replace")))
        return r.stdout.decode().strip()

    def _pids(self):
        """The postmaster and its children (backends, background workers)."""
        if not self.proc or self.proc.poll() is not None:
            return []
        root = self.proc.pid
        pids = [root]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == root:
                    pids.append(int(stat.split("/")[2]))
            except (OSError, IndexError, ValueError):
                pass
        return pids

    def kill(self):
        """Immediate shutdown (what a crash looks like to clients)."""
        self._run([os.path.join(BINDIR, "pg_ctl"), "stop", "-D", self.data, "-m", "immediate", "-w"])
        self.proc.wait(30)

    def pause(self):
        """SIGSTOP every process of the server: TCP still connects, nothing answers."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self):
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def close(self):
        try:
            if self.proc and self.proc.poll() is None:
                self.resume()
                self._run([os.path.join(BINDIR, "pg_ctl"), "stop", "-D", self.data, "-m", "fast", "-w"])
                self.proc.wait(30)
        except Exception:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
