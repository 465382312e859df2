#!/usr/bin/env python3
"""Cold-start proxy for a Lambda function binary, without AWS: starts the binary against a fake
Lambda Runtime API on loopback and measures process start -> its first
`GET /2018-06-01/runtime/invocation/next` (init done, ready for the first invocation), and the
process's peak RSS (VmHWM) at that moment. Nothing is invoked; the database is never contacted
(pools connect on first use), so this is the binary's own init path: config, secrets from the
environment, SDK config, clients.

Usage: cold-start-probe.py BINARY [RUNS]  -> prints one JSON object (median / max over RUNS).
"""
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time


def probe(binary):
    ready = {}
    done = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if "invocation/next" in self.path and "t" not in ready:
                ready["t"] = time.monotonic()
                try:
                    with open(f"/proc/{proc.pid}/status") as f:
                        for line in f:
                            if line.startswith(("VmHWM", "VmRSS")):
                                k, v = line.split(":")
                                ready[k] = int(v.split()[0])
                except OSError:
                    pass
                done.set()
            # Hold the long poll: the runtime waits here as it would on AWS.
            time.sleep(2)
            self.send_response(500)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{srv.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "probe",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "probe",
        "AWS_LAMBDA_LOG_STREAM_NAME": "probe",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "probe",
        "AWS_SECRET_ACCESS_KEY": "probe",
        "AWS_EC2_METADATA_DISABLED": "true",
        # Port 9 (discard): nothing connects during init; a connection attempt would show.
        "DATABASE_URL": "postgres://probe:probe@127.0.0.1:9/probe",
        "CALSETA_KEY_HASH_SECRET": "probe-key-hash-secret-probe-key-hash",
        "CALSETA_ENCRYPTION_KEY": "00" * 32,
        "ENRICH_QUEUE_URL": "http://127.0.0.1:9/000000000000/enrich",
        "DISPATCH_QUEUE_URL": "http://127.0.0.1:9/000000000000/dispatch",
        "SQS_ENDPOINT_URL": "http://127.0.0.1:9",
        "RUST_LOG": "error",
    }
    start = time.monotonic()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ok = done.wait(10)
    proc.kill()
    _, err = proc.communicate()
    srv.shutdown()
    if not ok:
        raise SystemExit(f"{binary}: never asked for an invocation: {err.decode(errors='replace')[-500:]}")
    return (ready["t"] - start) * 1000.0, ready.get("VmHWM", 0) / 1024.0


def main():
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    results = [probe(binary) for _ in range(runs)]
    ms = [r[0] for r in results]
    rss = [r[1] for r in results]
    print(json.dumps({
        "binary": os.path.basename(binary),
        "runs": runs,
        "start_to_ready_ms_median": round(statistics.median(ms), 1),
        "start_to_ready_ms_max": round(max(ms), 1),
        "peak_rss_mib_at_ready": round(max(rss), 1),
    }))


if __name__ == "__main__":
    main()
