#!/usr/bin/env python3
"""The resilience suite (issue #17): drives a real `calseta dev` stack over a persistent Postgres
through faults and counts what each fault cost.

Parts, all real processes or real sockets on loopback:
  - Postgres: a throwaway cluster of our own (initdb, SCRAM password), so it can be stopped,
    restarted and frozen (SIGSTOP) under the stack; `calseta dev` gets it as DATABASE_URL.
  - the stack: `calseta dev --data-dir` (secrets persist with the data), restarted by kill -9 or
    SIGTERM in some scenarios;
  - a local agent: an HTTP receiver that verifies every Standard Webhooks signature and records
    each webhook id and the alert it carries; it can go down (socket closed) or answer slowly;
  - a provider simulator (GreyNoise community + AbuseIPDB) that can answer 429, 5xx or hang;
  - black-box load: generic alerts POSTed to /v1/ingest/generic by several threads.

For every scenario: acknowledged (202) / lost (202 but not stored) / never enriched (still
Pending) / never delivered (no webhook for it) / duplicate webhook ids. Goal 0/0/0/0/0. A slow
agent's redeliveries (at-least-once, documented) are reported apart. Then every log and every
response of the run is scanned for the run's secrets.

Exit status: 0 when every scenario run met its goal and the secrets scan found nothing, 1 when a
goal was missed, 2 when the suite itself could not run. Usage: see --help and docs/resilience.md.
"""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import pwd
import random
import secrets as rnd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ---------------------------------------------------------------------------------------------
# helpers


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token(n=32):
    return base64.urlsafe_b64encode(rnd.token_bytes(n)).decode().rstrip("=")


class SuiteError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Postgres


def pg_bin_dir():
    """Where initdb and pg_ctl are: PG_BIN_DIR, PATH, pg_config, or Debian's versioned folder."""
    cands = [os.environ.get("PG_BIN_DIR", "")]
    if shutil.which("initdb"):
        cands.append(os.path.dirname(shutil.which("initdb")))
    try:
        cands.append(subprocess.run(["pg_config", "--bindir"], stdout=subprocess.PIPE, text=True).stdout.strip())
    except OSError:
        pass
    root = "/usr/lib/postgresql"
    if os.path.isdir(root):
        cands += [os.path.join(root, v, "bin") for v in sorted(os.listdir(root), reverse=True)]
    for c in cands:
        if c and os.access(os.path.join(c, "initdb"), os.X_OK) and os.access(os.path.join(c, "pg_ctl"), os.X_OK):
            return c
    raise SuiteError("no initdb/pg_ctl found (scripts/setup.sh ensure_postgres installs them)")


class Postgres:
    """A throwaway cluster with a password (SCRAM) on a loopback port and a private socket dir."""

    def __init__(self, work):
        self.dir = os.path.join(work, "pg")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.port = free_port()
        self.password = token(24)
        self.user = "calseta"
        # Postgres refuses to run as root: then it runs as the `postgres` OS user.
        self.as_user = None
        if os.geteuid() == 0:
            self.as_user = pwd.getpwnam("postgres")
        self.bin = pg_bin_dir()

    def _run(self, args, **kw):
        if self.as_user:
            args = ["setpriv", f"--reuid={self.as_user.pw_uid}", f"--regid={self.as_user.pw_gid}",
                    "--init-groups", "--"] + args
        return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)

    def tool(self, name):
        return os.path.join(self.bin, name)

    def init(self):
        os.makedirs(self.sock, exist_ok=True)
        pwfile = os.path.join(self.dir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        os.chmod(pwfile, 0o600)
        if self.as_user:
            for p in (self.dir, self.sock, pwfile):
                os.chown(p, self.as_user.pw_uid, self.as_user.pw_gid)
        self._run([self.tool("initdb"), "-D", self.data, "-U", self.user, "--auth=scram-sha-256",
                   f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"])
        os.remove(pwfile)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.sock}'\nunix_socket_permissions = 0700\n"
                    "max_connections = 100\nfsync = off\n")
        self.start()
        self.psql("postgres", "CREATE DATABASE calseta")

    def start(self):
        self._run([self.tool("pg_ctl"), "-D", self.data, "-l", self.logfile, "-w", "-t", "60", "start"])

    def stop(self):
        self._run([self.tool("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop"])

    def pids(self):
        """The postmaster and all its children (backends, checkpointer, ...)."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            master = int(f.readline())
        out = [master]
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    with open(f"/proc/{p}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == master:
                    out.append(int(p))
        return out

    def signal_all(self, sig):
        for p in self.pids():
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def url(self):
        return f"postgres://{self.user}:{self.password}@127.0.0.1:{self.port}/calseta"

    def psql(self, db, sql):
        env = dict(os.environ, PGPASSWORD=self.password)
        psql = self.tool("psql") if os.access(self.tool("psql"), os.X_OK) else "psql"
        r = subprocess.run([psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", db,
                            "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode != 0:
            raise SuiteError(f"psql: {r.stderr.strip()}")
        return [line for line in r.stdout.splitlines() if line]

    def destroy(self):
        try:
            self.signal_all(signal.SIGCONT)
            self.stop()
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass


class Server(ThreadingHTTPServer):
    """A threaded server that does not print a traceback when a client hangs up (the stack's
    HTTP client gives up on a hung provider, a killed stack drops its connections)."""

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


# ---------------------------------------------------------------------------------------------
# the local agent


class Agent:
    """Receives webhooks, verifies each signature, records webhook id -> alert uuid."""

    def __init__(self):
        self.port = free_port()
        self.secret = None
        self.lock = threading.Lock()
        self.received = []  # (webhook_id, alert_uuid, monotonic time)
        self.bad_signatures = 0
        self.bodies = []  # raw bodies, for the secrets scan
        self.mode = "up"
        self.slow_seconds = 0.0
        self.seen_ids = set()
        self.server = None
        self.thread = None

    def verify(self, headers, body):
        wid = headers.get("webhook-id", "")
        ts = headers.get("webhook-timestamp", "")
        sigs = headers.get("webhook-signature", "").split()
        secret = self.secret or ""
        key = base64.b64decode(secret.removeprefix("whsec_"))
        mac = hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()
        want = "v1," + base64.b64encode(mac).decode()
        ok = any(hmac.compare_digest(want, s) for s in sigs)
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300
        return ok and fresh, wid

    def handler(agent):
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                ok, wid = agent.verify(self.headers, body)
                if not ok:
                    with agent.lock:
                        agent.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                try:
                    alert = json.loads(body)["alert"]["uuid"]
                except (ValueError, KeyError, TypeError):
                    alert = None
                with agent.lock:
                    first = wid not in agent.seen_ids
                    agent.seen_ids.add(wid)
                    agent.received.append((wid, alert, time.monotonic()))
                    agent.bodies.append(body)
                    slow = agent.mode == "slow" and first
                # A slow agent answers its first receipt of a webhook after the sender's
                # timeout (a retry of the same id is answered at once).
                if slow:
                    time.sleep(agent.slow_seconds)
                self.send_response(204)
                self.end_headers()

        return H

    def up(self):
        self.server = Server(("127.0.0.1", self.port), self.handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self):
        """The agent is gone: its port refuses connections."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self):
        with self.lock:
            return list(self.received)


# ---------------------------------------------------------------------------------------------
# provider simulator


class Providers:
    """GreyNoise community and AbuseIPDB answers; in fault mode, some requests get 429 (with
    Retry-After), 5xx, or no answer before the provider client's 10 s timeout."""

    def __init__(self, abuse_key):
        self.port = free_port()
        self.abuse_key = abuse_key
        self.fault = False
        self.hang_seconds = 12
        # Seconds before every answer: slow providers keep work in flight (restart scenarios).
        self.latency = 0.0
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "429": 0, "5xx": 0, "hang": 0, "ok": 0, "unauthorized": 0, "unknown path": 0}
        self.n = 0

    def handler(sim):
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, code, doc, extra=()):
                b = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(b)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(b)

            def do_GET(self):
                with sim.lock:
                    sim.n += 1
                    n = sim.n
                    sim.counts["requests"] += 1
                    fault = sim.fault
                path, _, query = self.path.partition("?")
                if sim.latency:
                    time.sleep(sim.latency)
                if fault:
                    kind = n % 6
                    if kind == 0:
                        sim.count("429")
                        return self.reply(429, {"message": "rate limited"}, [("Retry-After", "2")])
                    if kind == 1:
                        sim.count("5xx")
                        return self.reply(503, {"message": "unavailable"})
                    if kind == 2:
                        sim.count("hang")
                        time.sleep(sim.hang_seconds)
                        return self.reply(504, {"message": "late"})
                if path.startswith("/greynoise/v3/community/"):
                    ip = path.rsplit("/", 1)[1]
                    sim.count("ok")
                    return self.reply(200, {"ip": ip, "noise": False, "riot": False, "classification": "unknown",
                                            "name": "unknown", "link": f"https://viz.greynoise.io/ip/{ip}",
                                            "last_seen": "2026-01-01", "message": "Success"})
                if path.startswith("/abuseipdb/api/v2/check"):
                    if self.headers.get("Key") != sim.abuse_key:
                        sim.count("unauthorized")
                        return self.reply(401, {"errors": [{"detail": "Authentication failed", "status": 401}]})
                    ip = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("ipAddress", "")
                    sim.count("ok")
                    return self.reply(200, {"data": {"ipAddress": ip, "isPublic": True, "ipVersion": 4,
                                                     "isWhitelisted": False, "abuseConfidenceScore": 10,
                                                     "countryCode": "US", "usageType": "Data Center",
                                                     "isp": "Example", "domain": "example.net", "hostnames": [],
                                                     "isTor": False, "totalReports": 1, "numDistinctUsers": 1,
                                                     "lastReportedAt": "2026-01-01T00:00:00+00:00"}})
                sim.count("unknown path")
                return self.reply(404, {"message": "not found"})

        return H

    def count(self, k):
        with self.lock:
            self.counts[k] += 1

    def start(self):
        self.server = Server(("127.0.0.1", self.port), self.handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# ---------------------------------------------------------------------------------------------
# the stack


class Stack:
    def __init__(self, binary, work, pg, providers, admin_key, abuse_key):
        self.binary = binary
        self.data_dir = os.path.join(work, "dev")
        self.logfile = os.path.join(work, "calseta-dev.log")
        self.port = free_port()
        self.proc = None
        self.env = dict(
            os.environ,
            DATABASE_URL=pg.url(),
            CALSETA_ADMIN_KEY=admin_key,
            CALSETA_NO_DEMO="true",
            RUST_LOG=os.environ.get("RUST_LOG", "info"),
            # Real provider code against our simulator: GreyNoise (keyless) and AbuseIPDB.
            GREYNOISE_BASE_URL=f"http://127.0.0.1:{providers.port}/greynoise/v3",
            ABUSEIPDB_BASE_URL=f"http://127.0.0.1:{providers.port}/abuseipdb/api/v2",
            ABUSEIPDB_API_KEY=abuse_key,
            # No plan budgets: a long run would exhaust GreyNoise's 50/day and later scenarios
            # would skip the providers instead of meeting their faults.
            CALSETA_BUDGET_GREYNOISE="unlimited",
            CALSETA_BUDGET_ABUSEIPDB="unlimited",
            CALSETA_OUTBOUND_ALLOW_LOOPBACK="true",
        )
        for k in ("SQS_ENDPOINT_URL", "CALSETA_KEY_HASH_SECRET", "CALSETA_ENCRYPTION_KEY"):
            self.env.pop(k, None)

    def start(self, timeout=120):
        out = open(self.logfile, "a")
        out.write(f"\n==== start {time.strftime('%H:%M:%S')}\n")
        out.flush()
        self.proc = subprocess.Popen(
            [self.binary, "dev", "--port", str(self.port), "--mcp-port", "0", "--data-dir", self.data_dir],
            env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SuiteError(f"calseta dev exited with {self.proc.returncode}; see {self.logfile}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SuiteError(f"calseta dev was not ready within {timeout} s; see {self.logfile}")

    def kill(self, sig):
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise SuiteError("calseta dev did not stop within 60 s of the signal")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.kill(signal.SIGINT)


# ---------------------------------------------------------------------------------------------
# the HTTP client (every response is kept for the secrets scan)


class Api:
    def __init__(self, stack):
        self.stack = stack
        self.lock = threading.Lock()
        self.responses = []  # (what, bytes) of every response
        self.exempt = []  # responses that must show a secret once (creation answers)

    def call(self, method, path, key, body=None, timeout=30, exempt=False):
        c = http.client.HTTPConnection("127.0.0.1", self.stack.port, timeout=timeout)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"authorization": f"Bearer {key}"}
        if data is not None:
            headers["content-type"] = "application/json"
        try:
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            raw = r.read()
            seen = "".join(f"{k}: {v}\n" for k, v in r.getheaders()).encode() + raw
            with self.lock:
                (self.exempt if exempt else self.responses).append((f"{method} {path} {r.status}", seen))
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                doc = None
            return r.status, doc
        finally:
            c.close()


# ---------------------------------------------------------------------------------------------
# load


def alert_body(tag, i, ips=None):
    # Public-looking addresses (45.0.0.0/8 is not on the never-send list).
    h = int(hashlib.sha256(f"{tag}-{i}".encode()).hexdigest()[:8], 16)
    ip = f"45.{h % 250}.{(h >> 8) % 250}.{1 + (h >> 16) % 250}"
    return {
        "title": f"resilience {tag} {i}", "severity": "High", "source_alert_id": f"{tag}-{i}",
        "rule_id": "resilience", "rule_name": "Resilience suite", "tags": ["resilience", tag],
        "src_ip": ips if ips is not None else ip, "user": f"user{i}@resilience.example.com",
    }


class Load:
    """Threads POSTing generic alerts at about `rate` per second until stopped; records each
    202's alert uuid and every other outcome (a SIEM would retry those)."""

    def __init__(self, api, key, tag, rate=20.0, threads=4):
        self.api, self.key, self.tag, self.rate, self.threads = api, key, tag, rate, threads
        self.acked = {}  # alert uuid -> monotonic time of its 202
        self.refused = {}  # status or error -> count
        self.lock = threading.Lock()
        self.next = 0
        self.stopping = threading.Event()
        self.workers = []

    def take(self):
        with self.lock:
            i = self.next
            self.next += 1
            return i

    def one(self, i):
        t = time.monotonic()
        try:
            status, doc = self.api.call("POST", "/v1/ingest/generic", self.key, alert_body(self.tag, i), timeout=60)
        except OSError as e:
            status, doc = type(e).__name__, None
        with self.lock:
            if status == 202 and doc and doc.get("data", {}).get("alert_uuid"):
                self.acked[doc["data"]["alert_uuid"]] = t
            else:
                k = str(status)
                self.refused[k] = self.refused.get(k, 0) + 1

    def run(self):
        per_thread = self.threads / self.rate
        while not self.stopping.is_set():
            t = time.monotonic()
            self.one(self.take())
            left = per_thread - (time.monotonic() - t)
            if left > 0:
                self.stopping.wait(left)

    def start(self):
        for _ in range(self.threads):
            w = threading.Thread(target=self.run, daemon=True)
            w.start()
            self.workers.append(w)
        return self

    def stop(self):
        self.stopping.set()
        for w in self.workers:
            w.join()


# ---------------------------------------------------------------------------------------------
# accounting


class Result:
    def __init__(self, name):
        self.name = name
        self.acked = 0
        self.lost = 0
        self.never_enriched = 0
        self.never_delivered = 0
        self.duplicates = 0
        self.redelivered = 0
        self.notes = []
        self.error = None

    def ok(self):
        return self.error is None and not (self.lost or self.never_enriched or self.never_delivered or self.duplicates)


class Ctx:
    def __init__(self, args, pg, stack, api, agent, providers, admin_key, ingest_key, agent_uuid):
        self.args, self.pg, self.stack, self.api, self.agent = args, pg, stack, api, agent
        self.providers = providers
        self.admin_key, self.ingest_key, self.agent_uuid = admin_key, ingest_key, agent_uuid

    def state(self, uuids):
        """alert uuid -> enrichment status, for the stored ones."""
        out = {}
        uuids = list(uuids)
        for k in range(0, len(uuids), 500):
            part = ",".join(f"'{u}'" for u in uuids[k:k + 500])
            for line in self.pg.psql("calseta", f"SELECT uuid, enrichment_status FROM alerts WHERE uuid IN ({part})"):
                u, s = line.split("|")
                out[u] = s
        return out

    def pending_deliveries(self, uuids):
        part = ",".join(f"'{u}'" for u in uuids) or "NULL"
        rows = self.pg.psql("calseta", "SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
                                       f"WHERE d.status IN ('pending', 'failed') AND a.uuid IN ({part})")
        return int(rows[0]) if rows else 0

    def dead(self, uuids):
        """The alerts among `uuids` with a dead delivery."""
        part = ",".join(f"'{u}'" for u in uuids) or "NULL"
        return set(self.pg.psql("calseta", "SELECT a.uuid FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
                                           f"WHERE d.status = 'dead' AND a.uuid IN ({part})"))

    def settle(self, name, acked, timeout, slow_agent=False, mark=0):
        """Waits until every acknowledged alert is enriched and delivered (or `timeout`), then
        counts. `mark` = index in the agent's log where this scenario's deliveries start."""
        r = Result(name)
        r.acked = len(acked)
        t0 = time.monotonic()
        while True:
            states = self.state(acked)
            got = {a for _, a, _ in self.agent.delivered()[mark:]}
            pending = [u for u in acked if states.get(u) in (None, "Pending") or u not in got]
            if not pending or time.monotonic() - t0 > timeout:
                break
            # Dead deliveries (retries exhausted) will not change without a manual replay.
            dead = self.dead(pending)
            if all(states.get(u) not in (None, "Pending") and u in dead for u in pending):
                break
            time.sleep(1)
        if slow_agent:
            # Redeliveries come after the retry delay: wait until no delivery is left pending or
            # failed-with-a-retry-scheduled.
            while time.monotonic() - t0 < timeout and self.pending_deliveries(acked):
                time.sleep(1)
        states = self.state(acked)
        got = {a for _, a, _ in self.agent.delivered()[mark:]}
        r.lost = sum(1 for u in acked if u not in states)
        r.never_enriched = sum(1 for u in acked if states.get(u) == "Pending")
        r.never_delivered = sum(1 for u in acked if u in states and u not in got)
        ids = {}
        for wid, a, _ in self.agent.delivered()[mark:]:
            if a in acked:
                ids[wid] = ids.get(wid, 0) + 1
        extra = sum(n - 1 for n in ids.values() if n > 1)
        if slow_agent:
            r.redelivered = extra
        else:
            r.duplicates = extra
        statuses = {}
        for s in states.values():
            statuses[s] = statuses.get(s, 0) + 1
        r.notes.append("enrichment " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
        dead = self.dead([u for u in acked if u in states and u not in got])
        if dead:
            r.notes.append(f"{len(dead)} undelivered with a dead delivery (retries exhausted)")
        r.notes.append(f"settled in {time.monotonic() - t0:.0f} s")
        return r


def refused_note(load):
    if not load.refused:
        return "every request answered 202"
    return "not acknowledged (a SIEM retries): " + ", ".join(f"{k} x{v}" for k, v in sorted(load.refused.items()))


# ---------------------------------------------------------------------------------------------
# scenarios


def sc_baseline(ctx):
    mark = len(ctx.agent.delivered())
    load = Load(ctx.api, ctx.ingest_key, "baseline", rate=ctx.args.rate).start()
    time.sleep(ctx.args.load_seconds)
    load.stop()
    r = ctx.settle("baseline (no fault)", load.acked, ctx.args.settle, mark=mark)
    r.notes.append(refused_note(load))
    return r


def in_flight(ctx, tag):
    """Alerts of `tag` stored but not yet enriched: work a restart could strand."""
    rows = ctx.pg.psql("calseta", f"SELECT count(*) FROM alerts WHERE source_alert_id LIKE '{tag}-%' "
                                  "AND enrichment_status = 'Pending'")
    return int(rows[0]) if rows else 0


def restart_scenario(ctx, name, tag, sig):
    mark = len(ctx.agent.delivered())
    # Slow providers keep a backlog, so the stop lands on work in every stage.
    ctx.providers.latency = 0.5
    load = Load(ctx.api, ctx.ingest_key, tag, rate=ctx.args.rate * 2, threads=8).start()
    try:
        time.sleep(ctx.args.load_seconds / 2)
        busy = in_flight(ctx, tag)
        ctx.stack.kill(sig)
        log(f"{name}: stack stopped by {signal.Signals(sig).name} ({len(load.acked)} acknowledged so far, "
            f"{busy} not yet enriched)")
        time.sleep(1)
        ctx.providers.latency = 0.0
        ctx.stack.start()
    finally:
        ctx.providers.latency = 0.0
    time.sleep(ctx.args.load_seconds / 2)
    load.stop()
    r = ctx.settle(name, load.acked, ctx.args.settle, mark=mark)
    r.notes.insert(0, f"{busy} acknowledged alerts not yet enriched at the stop")
    r.notes.append(refused_note(load))
    return r


def sc_kill9(ctx):
    return restart_scenario(ctx, "kill -9 mid-ingest, restart", "kill9", signal.SIGKILL)


def sc_sigterm(ctx):
    return restart_scenario(ctx, "SIGTERM, restart", "sigterm", signal.SIGTERM)


def sc_pg_stop(ctx):
    mark = len(ctx.agent.delivered())
    load = Load(ctx.api, ctx.ingest_key, "pgstop", rate=ctx.args.rate).start()
    time.sleep(ctx.args.load_seconds / 2)
    ctx.pg.stop()
    log(f"postgres stopped for {ctx.args.outage} s")
    time.sleep(ctx.args.outage)
    ctx.pg.start()
    time.sleep(ctx.args.load_seconds / 2)
    load.stop()
    r = ctx.settle(f"Postgres stopped {ctx.args.outage} s under load", load.acked, ctx.args.settle, mark=mark)
    r.notes.append(refused_note(load))
    return r


def sc_pg_freeze(ctx):
    mark = len(ctx.agent.delivered())
    load = Load(ctx.api, ctx.ingest_key, "pgfreeze", rate=ctx.args.rate).start()
    time.sleep(ctx.args.load_seconds / 2)
    ctx.pg.signal_all(signal.SIGSTOP)
    log(f"postgres frozen (SIGSTOP) for {ctx.args.outage} s")
    time.sleep(ctx.args.outage)
    ctx.pg.signal_all(signal.SIGCONT)
    time.sleep(ctx.args.load_seconds / 2)
    load.stop()
    r = ctx.settle(f"Postgres frozen {ctx.args.outage} s under load", load.acked, ctx.args.settle, mark=mark)
    r.notes.append(refused_note(load))
    return r


# The default delivery retry schedule (seconds before retry 1, 2, ...; CALSETA_DELIVERY_RETRY_SCHEDULE).
DELIVERY_SCHEDULE = [int(x) for x in os.environ.get(
    "CALSETA_DELIVERY_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000").split(",")]


def sc_agent_down(ctx):
    mark = len(ctx.agent.delivered())
    ctx.agent.down()
    log(f"agent down for {ctx.args.agent_down} s")
    load = Load(ctx.api, ctx.ingest_key, "agentdown", rate=ctx.args.rate).start()
    time.sleep(min(ctx.args.load_seconds, ctx.args.agent_down))
    load.stop()
    time.sleep(max(0, ctx.args.agent_down - ctx.args.load_seconds))
    ctx.agent.up()
    # The agent keeps the default delivery schedule; wait for the first retry that falls after
    # the outage for the last alert of the load (then the usual settle window).
    at = 0
    for step in DELIVERY_SCHEDULE:
        at += step
        if at > ctx.args.agent_down:
            break
    wait = max(ctx.args.settle + 900, at + ctx.args.load_seconds - ctx.args.agent_down + ctx.args.settle)
    log(f"agent up; waiting up to {wait} s for the scheduled retries")
    r = ctx.settle(f"agent down {ctx.args.agent_down} s", load.acked, wait, mark=mark)
    r.notes.append(refused_note(load))
    return r


def sc_slow_agent(ctx):
    mark = len(ctx.agent.delivered())
    # The agent answers after its 2 s delivery timeout.
    st, _ = ctx.api.call("PATCH", f"/v1/agents/{ctx.agent_uuid}", ctx.admin_key, {"timeout_seconds": 2})
    if st != 200:
        raise SuiteError(f"PATCH agent timeout answered {st}")
    ctx.agent.slow_seconds, ctx.agent.mode = 3.5, "slow"
    try:
        load = Load(ctx.api, ctx.ingest_key, "slowagent", rate=min(ctx.args.rate, 5)).start()
        time.sleep(ctx.args.load_seconds)
        load.stop()
        r = ctx.settle("slow agent (answers after the timeout)", load.acked, ctx.args.settle + 300,
                       slow_agent=True, mark=mark)
    finally:
        ctx.agent.mode = "up"
        ctx.api.call("PATCH", f"/v1/agents/{ctx.agent_uuid}", ctx.admin_key, {"timeout_seconds": 30})
    r.notes.append(refused_note(load))
    return r


def sc_maximal(ctx):
    mark = len(ctx.agent.delivered())
    h = rnd.randbits(16)
    ips = [f"46.{(h + i // 62500) % 250}.{i // 250 % 250}.{1 + i % 250}" for i in range(ctx.args.max_ips)]
    t = time.monotonic()
    st, doc = ctx.api.call("POST", "/v1/ingest/generic", ctx.ingest_key,
                           alert_body("maximal", 0, ips=ips), timeout=120)
    acked = {}
    note = f"maximal alert ({len(ips)} ips) answered {st} in {time.monotonic() - t:.2f} s"
    if st == 202 and doc:
        acked[doc["data"]["alert_uuid"]] = t
    load = Load(ctx.api, ctx.ingest_key, "maxnormal", rate=min(ctx.args.rate, 5)).start()
    time.sleep(ctx.args.load_seconds)
    load.stop()
    normal = dict(load.acked)
    acked.update(normal)
    r = ctx.settle("maximal alert during normal traffic", acked, ctx.args.settle, mark=mark)
    arrived = {}
    for _, a, at in ctx.agent.delivered()[mark:]:
        arrived.setdefault(a, at)
    lat = sorted(arrived[u] - t0 for u, t0 in normal.items() if u in arrived)
    part = ",".join(f"'{u}'" for u in normal) or "NULL"
    enr = [float(x) for x in ctx.pg.psql("calseta", "SELECT extract(epoch FROM enriched_at - ingested_at) FROM alerts "
                                                    f"WHERE enriched_at IS NOT NULL AND uuid IN ({part}) ORDER BY 1")]
    if enr:
        r.notes.append(f"normal alerts meanwhile, ingest to enriched: p50 {enr[len(enr) // 2]:.2f} s, "
                       f"max {enr[-1]:.2f} s (n={len(enr)})")
    if lat:
        r.notes.append(f"normal alerts meanwhile, 202 to webhook: p50 {lat[len(lat) // 2]:.2f} s, "
                       f"max {lat[-1]:.2f} s (n={len(lat)})")
    if acked:
        u = next(iter(acked))
        rows = ctx.pg.psql("calseta", f"SELECT count(*) FROM alert_indicators ai JOIN alerts a ON a.id = ai.alert_id "
                                      f"WHERE a.uuid = '{u}'")
        note += f", {rows[0] if rows else '?'} indicators kept"
    r.notes.insert(0, note)
    r.notes.append(refused_note(load))
    return r


def sc_providers(ctx):
    mark = len(ctx.agent.delivered())
    ctx.providers.fault = True
    before = dict(ctx.providers.counts)
    try:
        load = Load(ctx.api, ctx.ingest_key, "providers", rate=min(ctx.args.rate, 10)).start()
        time.sleep(ctx.args.load_seconds)
        load.stop()
        r = ctx.settle("provider 429 / 5xx / timeouts", load.acked, ctx.args.settle + 120, mark=mark)
    finally:
        ctx.providers.fault = False
    c = {k: ctx.providers.counts[k] - before[k] for k in before}
    r.notes.append(f"provider answers: {c['429']} x 429, {c['5xx']} x 503, {c['hang']} hung past the 10 s "
                   f"client timeout, {c['ok']} ok, {c['unknown path']} unknown paths")
    r.notes.append(refused_note(load))
    return r


def sc_queue(ctx):
    """Duplicated and reordered queue messages: the in-process queue cannot be reached from
    outside, so this runs the Rust test that feeds the real handlers each message twice, in
    reverse order, and prints its counts as one JSON line."""
    r = Result("duplicated + reordered queue messages")
    cmd = ctx.args.queue_test
    if not cmd:
        r.error = "skipped (no --queue-test command)"
        return r
    p = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800)
    with open(os.path.join(ctx.args.work, "queue-test.log"), "w") as f:
        f.write(p.stdout)
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESILIENCE ")), None)
    if line is None:
        r.error = f"the queue test printed no counts (exit {p.returncode}); see queue-test.log"
        return r
    d = json.loads(line.removeprefix("RESILIENCE "))
    for k in ("acked", "lost", "never_enriched", "never_delivered", "duplicates"):
        setattr(r, k, d[k])
    r.notes.append(d.get("note", ""))
    if p.returncode != 0:
        r.error = f"queue test exited {p.returncode}"
    return r


SCENARIOS = {
    "baseline": sc_baseline,
    "kill9": sc_kill9,
    "sigterm": sc_sigterm,
    "pg-stop": sc_pg_stop,
    "pg-freeze": sc_pg_freeze,
    "agent-down": sc_agent_down,
    "slow-agent": sc_slow_agent,
    "maximal": sc_maximal,
    "providers": sc_providers,
    "queue": sc_queue,
}
# The short form (CI): every scenario, with short outages; see docs/resilience.md.
SHORT = ["baseline", "kill9", "sigterm", "pg-stop", "pg-freeze", "agent-down", "slow-agent", "maximal", "providers", "queue"]


# ---------------------------------------------------------------------------------------------
# secrets scan


def scan(ctx, named_secrets, files):
    """Every response (but the creation answers that must show a secret once), every webhook
    body and every log file: none may contain a secret of the run."""
    found = []
    blobs = [(w, b) for w, b in ctx.api.responses]
    blobs += [(f"webhook body #{i}", b) for i, b in enumerate(ctx.agent.bodies)]
    for f in files:
        if os.path.exists(f):
            with open(f, "rb") as fh:
                blobs.append((os.path.relpath(f, ctx.args.work), fh.read()))
    for name, value in named_secrets.items():
        needles = {value.encode()}
        if name.startswith("agent signing secret"):
            needles.add(value.removeprefix("whsec_").encode())
        for where, blob in blobs:
            if any(n in blob for n in needles):
                found.append(f"{name} in {where}")
    return found, len(blobs)


# ---------------------------------------------------------------------------------------------
# main


def table(results):
    lines = ["| scenario | acknowledged | lost | never enriched | never delivered | duplicate webhook ids | goal | notes |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        goal = "met" if r.ok() else ("**ERROR**" if r.error else "**missed**")
        notes = "; ".join(n for n in r.notes if n)
        if r.redelivered:
            notes = f"at-least-once redeliveries (documented, not counted as duplicates): {r.redelivered}; " + notes
        if r.error:
            notes = f"{r.error}; {notes}"
        lines.append(f"| {r.name} | {r.acked} | {r.lost} | {r.never_enriched} | {r.never_delivered} | "
                     f"{r.duplicates} | {goal} | {notes} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the calseta executable")
    ap.add_argument("--short", action="store_true", help="the CI form: short outages, scenarios the product passes")
    ap.add_argument("--only", help="comma list of scenarios: " + ",".join(SCENARIOS))
    ap.add_argument("--queue-test", help="shell command running the queue-level Rust test")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs) after the run")
    ap.add_argument("--report", help="also write the markdown table to this file")
    args = ap.parse_args()
    if args.short:
        args.load_seconds, args.outage, args.agent_down, args.settle, args.rate, args.max_ips = 8, 5, 20, 90, 15, 5000
    else:
        args.load_seconds, args.outage, args.agent_down, args.settle, args.rate, args.max_ips = 20, 20, 600, 180, 25, 200000
    names = args.only.split(",") if args.only else (SHORT if args.short else list(SCENARIOS))
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)}")
    args.work = tempfile.mkdtemp(prefix="calseta-resilience-")
    os.chmod(args.work, 0o755)
    log(f"work folder {args.work}; scenarios: {', '.join(names)}")

    admin_key = "cai_" + token()
    abuse_key = "abuse-" + token(24)
    agent_auth = "agent-auth-" + token(24)
    pg = Postgres(args.work)
    agent = Agent()
    providers = Providers(abuse_key)
    stack = None
    results = []
    try:
        pg.init()
        agent.up()
        providers.start()
        stack = Stack(args.bin, args.work, pg, providers, admin_key, abuse_key)
        stack.start()
        api = Api(stack)
        st, doc = api.call("POST", "/v1/api-keys", admin_key,
                           {"name": "resilience-ingest", "scopes": ["alerts:write"], "key_type": "agent"}, exempt=True)
        if st != 201:
            raise SuiteError(f"creating the ingest key answered {st}: {doc}")
        ingest_key = doc["data"]["key"]
        st, doc = api.call("POST", "/v1/agents", admin_key, {
            "name": "resilience-agent", "endpoint_url": f"http://127.0.0.1:{agent.port}/webhook",
            "auth_header_name": "X-Agent-Token", "auth_header_value": agent_auth, "timeout_seconds": 30,
        }, exempt=True)
        if st != 201:
            raise SuiteError(f"creating the agent answered {st}: {doc}")
        agent.secret = doc["data"]["signing_secret"]
        ctx = Ctx(args, pg, stack, api, agent, providers, admin_key, ingest_key, doc["data"]["uuid"])
        for n in names:
            log(f"scenario {n} ...")
            try:
                r = SCENARIOS[n](ctx)
            except SuiteError as e:
                r = Result(n)
                r.error = str(e)
                if stack.proc.poll() is not None:
                    stack.start()
            results.append(r)
            log(f"scenario {n}: {'goal met' if r.ok() else 'GOAL MISSED'} "
                f"(acked {r.acked}, lost {r.lost}, never enriched {r.never_enriched}, "
                f"never delivered {r.never_delivered}, duplicates {r.duplicates}, redelivered {r.redelivered})")
        # A few reads an agent makes, so their answers are scanned too.
        api.call("GET", "/v1/agents", admin_key)
        api.call("GET", f"/v1/agents/{ctx.agent_uuid}", admin_key)
        api.call("GET", "/v1/sources", admin_key)
        api.call("GET", "/v1/api-keys", admin_key)
        api.call("GET", "/v1/enrichments/providers", admin_key)
        api.call("GET", "/v1/alerts?page_size=50", ingest_key)
        stack.stop()
        named = {"admin key": admin_key, "ingest API key": ingest_key, "agent signing secret": agent.secret,
                 "agent auth header value": agent_auth, "AbuseIPDB API key": abuse_key,
                 "database password": pg.password}
        for f in os.listdir(os.path.join(stack.data_dir, "secrets")):
            with open(os.path.join(stack.data_dir, "secrets", f)) as fh:
                stored = json.load(fh)
            named["key-hashing secret"] = stored["key_hash_secret"]
            named["encryption key"] = stored["encryption_key"]
        leaks, scanned = scan(ctx, named, [stack.logfile, pg.logfile, os.path.join(args.work, "queue-test.log")])
        if agent.bad_signatures:
            leaks.append(f"{agent.bad_signatures} webhooks with a bad signature")
    except SuiteError as e:
        log(f"the suite could not run: {e}")
        if stack and os.path.exists(stack.logfile):
            with open(stack.logfile) as f:
                sys.stdout.write(f.read()[-4000:])
        return 2
    finally:
        if stack:
            try:
                stack.stop()
            except SuiteError:
                pass
        agent.down()
        pg.destroy()

    out = table(results)
    secrets_line = (f"Secrets scan: {scanned} responses, webhook bodies and logs, {len(named)} secrets: "
                    + ("nothing found." if not leaks else "FOUND: " + "; ".join(leaks)))
    print("\n" + out + "\n\n" + secrets_line)
    if args.report:
        with open(args.report, "w") as f:
            f.write(out + "\n\n" + secrets_line + "\n")
    failed = [r.name for r in results if not r.ok()]
    if not args.keep and not failed and not leaks:
        shutil.rmtree(args.work, ignore_errors=True)
    else:
        log(f"logs kept in {args.work}")
    if failed or leaks:
        log("goal missed: " + ", ".join(failed + (["secrets scan"] if leaks else [])))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
