#!/usr/bin/env python3
"""Is loadtest the bottleneck? Measures it against wrk on one core, the same upstream for both.

The generator (wrk or loadtest, one thread each) is pinned to one CPU and the upstream to
another, and the two tools alternate in rounds (wrk, loadtest, loadtest, wrk, ...) so that drift
on the machine hits both. For each measurement it records the requests/s and the generator's
CPU time per request (from wait4 rusage). The requests/s ratio only means something while the
upstream is not saturated; the CPU per request ratio is meaningful either way, because it says
how much of a core each tool needs to send one request.

Everything listens on 127.0.0.1; the upstream this script starts is stopped through its process
id. Usage (from the repository root, after `cargo build --release -p loadtest`):

    python3 loadtest/scripts/vs_wrk.py                     # loadtest upstream on CPU 1
    python3 loadtest/scripts/vs_wrk.py --upstream nginx    # an nginx backend on CPU 1
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      default_type application/json;
      return 200 '{{"ok":true,"svc":"backend","data":"xxxxxxxxxxxxxxxxxxxxxxxxxxx"}}';
    }}
  }}
}}
"""


def run_measured(cmd):
    """Runs cmd to completion and returns (stdout, stderr). The caller reads the child's CPU time
    from the RUSAGE_CHILDREN delta around this call (communicate() reaps the child)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate()
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{err}")
    return out, err


def cpu_jiffies(cpus):
    """(busy, steal) jiffies summed over the given CPU numbers, from /proc/stat."""
    busy = steal = 0
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0][3:].isdigit() and int(parts[0][3:]) in cpus:
                v = [int(x) for x in parts[1:]]
                # user nice system idle iowait irq softirq steal
                busy += v[0] + v[1] + v[2] + v[5] + v[6]
                steal += v[7]
    return busy, steal


def proc_cpu(pgid):
    """CPU seconds of every process in the process group (nginx's workers are children of its
    master; the upstream runs in a session of its own)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu():
    r = os.times()
    return r.children_user + r.children_system


def wait_port(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loadtest", default="target/release/loadtest")
    ap.add_argument("--wrk", default="/usr/bin/wrk")
    ap.add_argument("--upstream", choices=["loadtest", "nginx"], default="loadtest")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--port", type=int, default=19000)
    ap.add_argument("--gen-cpu", default="0")
    ap.add_argument("--sut-cpu", default="1")
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument("--max-other", type=float, default=15.0,
                    help="a measurement is not clean when foreign CPU use + steal on the two CPUs exceeds this "
                         "percentage of one CPU (the rule of ../shared/bench)")
    a = ap.parse_args()

    for tool in (a.loadtest, a.wrk, shutil.which("taskset")):
        if not tool or not os.path.exists(tool):
            sys.exit(f"missing: {tool}")
    tmp = tempfile.mkdtemp(prefix="vs-wrk-")
    if a.upstream == "loadtest":
        up_cmd = ["taskset", "-c", a.sut_cpu, a.loadtest, "upstream", "--listen", f"127.0.0.1:{a.port}",
                  "--threads", "1", "--body-size", "64"]
    else:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=tmp, port=a.port))
        up_cmd = ["taskset", "-c", a.sut_cpu, nginx, "-c", conf, "-p", tmp]
    up = subprocess.Popen(up_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    rows = []
    try:
        wait_port(a.port)
        url = f"http://127.0.0.1:{a.port}/x"
        gen = ["taskset", "-c", a.gen_cpu]
        cpus = {int(a.gen_cpu), int(a.sut_cpu)}
        hz = os.sysconf("SC_CLK_TCK")
        for r in range(a.rounds):
            order = ["wrk", "loadtest"] if r % 2 == 0 else ["loadtest", "wrk"]
            for tool in order:
                busy0, steal0 = cpu_jiffies(cpus)
                up0 = proc_cpu(up.pid)
                t0 = time.time()
                before = children_cpu()
                if tool == "wrk":
                    out, _ = run_measured(gen + [a.wrk, "-t1", f"-c{a.connections}", f"-d{a.duration}s", url])
                    cpu = children_cpu() - before
                    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
                    n = int(re.search(r"(\d+) requests in", out).group(1))
                    errors = 0
                    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                    if m:
                        errors += int(m.group(1))
                    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
                    if m:
                        errors += sum(int(x) for x in m.groups())
                else:
                    jpath = os.path.join(tmp, "lt.json")
                    run_measured(gen + [a.loadtest, "run", url, "-c", str(a.connections), "-d", f"{a.duration}s",
                                        "--threads", "1", "--warmup", "0s", "--progress", "quiet", "--json", jpath])
                    cpu = children_cpu() - before
                    with open(jpath) as f:
                        res = json.load(f)["result"]
                    rps, n, errors = res["rps"], res["requests"], res["errors"] + res["unexpected_responses"]
                wall = time.time() - t0
                busy1, steal1 = cpu_jiffies(cpus)
                up_cpu = proc_cpu(up.pid) - up0
                # Foreign CPU: busy time on the two CPUs that neither the generator nor the
                # upstream accounts for, in % of one CPU over the measurement.
                other = 100.0 * ((busy1 - busy0) / hz - cpu - up_cpu) / wall
                steal = 100.0 * (steal1 - steal0) / hz / wall
                row = {"round": r + 1, "tool": tool, "rps": rps, "requests": n, "errors": errors,
                       "cpu_s": cpu, "cpu_us_per_req": cpu * 1e6 / max(n, 1),
                       "upstream_cpu_us_per_req": up_cpu * 1e6 / max(n, 1),
                       "other_pct": other, "steal_pct": steal, "clean": other + steal <= a.max_other}
                rows.append(row)
                print(f"round {r + 1} {tool:<9} {rps:>10.0f} req/s  {row['cpu_us_per_req']:6.2f} CPU µs/req "
                      f"({cpu:.2f}s CPU for {n} requests)  upstream {row['upstream_cpu_us_per_req']:5.2f} µs/req  "
                      f"other {other:5.1f}%  steal {steal:4.1f}%{'' if row['clean'] else '  NOT CLEAN'}  errors {errors}",
                      flush=True)
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    ratios = []
    cpu_ratios = []
    clean_rounds = []
    for r in range(1, a.rounds + 1):
        w = next(x for x in rows if x["round"] == r and x["tool"] == "wrk")
        l = next(x for x in rows if x["round"] == r and x["tool"] == "loadtest")
        ratios.append(l["rps"] / w["rps"])
        cpu_ratios.append(w["cpu_us_per_req"] / l["cpu_us_per_req"])
        if w["clean"] and l["clean"]:
            clean_rounds.append(r - 1)
    used = clean_rounds or list(range(a.rounds))
    if not clean_rounds:
        print("warning: no round was clean on both sides; all rounds are used (marked ~)")
    ratios_used = [ratios[i] for i in used]
    cpu_used = [cpu_ratios[i] for i in used]
    used_rows = [x for x in rows if x["round"] - 1 in used]
    med = lambda k, t: statistics.median(x[k] for x in used_rows if x["tool"] == t)
    print(f"\nupstream: {a.upstream} on CPU {a.sut_cpu}; generators on CPU {a.gen_cpu}; "
          f"{a.connections} connections, {a.duration}s x {a.rounds} rounds")
    print(f"wrk       median {med('rps', 'wrk'):>10.0f} req/s  {med('cpu_us_per_req', 'wrk'):.2f} CPU µs/req")
    print(f"loadtest  median {med('rps', 'loadtest'):>10.0f} req/s  {med('cpu_us_per_req', 'loadtest'):.2f} CPU µs/req")
    mark = lambda i: "" if i in clean_rounds else "*"
    tilde = "" if clean_rounds else "~"
    print(f"RATIO loadtest/wrk requests/s: median {statistics.median(ratios_used):.3f}{tilde} (n={len(used)}) "
          f"per_round=[{','.join(f'{x:.3f}{mark(i)}' for i, x in enumerate(ratios))}]")
    print(f"RATIO wrk/loadtest CPU per request (>1: loadtest is cheaper): median {statistics.median(cpu_used):.3f}{tilde} "
          f"(n={len(used)}) per_round=[{','.join(f'{x:.3f}{mark(i)}' for i, x in enumerate(cpu_ratios))}]")
    print("(* = a round where one side was not clean; such rounds are left out of the medians)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "rows": rows, "rps_ratio": ratios, "cpu_ratio": cpu_ratios}, f, indent=2)


if __name__ == "__main__":
    main()
