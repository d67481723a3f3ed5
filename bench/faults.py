#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/faults.py: what network faults cost dsdfs, on the emulated cluster.

Makes a cluster of 3 emulated nodes of its own (scripts/cluster-sim.sh: own
network, mount and UTS namespaces, /shared on each, UCX over the nodes' eth0),
starts dsdfs there with mpirun (--timeout 5), and measures, from node3, on
files owned by node2 (every operation crosses the emulated network):

  read     MiB/s of a cat of a new 32 MiB file of node2 (cold on node3,
           warm in node2's page cache)
  append   appends/s: 2,000 records of 64 bytes through one O_APPEND fd
  stat     stats/s of 300 files of node2 (lookup + attributes: the owner)
  create   creates/s of 300 new files in a new directory (each name claimed
           at its shard, one of the three nodes)

under each network condition, interleaved, --reps times (default 3):

  clean    the veth links as they are
  loss1    1 % of the packets every node sends dropped (nftables numgen)
  tbf100   every node's link limited to 100 Mbit/s (tc tbf, burst 64 KiB)
  delayX   X ms of round trip added between nodes: every node holds what it
           sends for X/2 ms (tc netem where the kernel has sch_netem; else
           the delay line tests/sim/delay_line.cc through iptables' NFQUEUE,
           --delay-line, default build/tests/sim/dsdfs-sim-delay-line); X is
           0.2 and 2

and prints the medians with their range and the ratio to the clean run
measured in the same run, beside the round trip ping measured from node3 to
node2 under each condition (the delay line adds its own wake-up lateness, so
the round trip it gives is what the table shows, not X). What bounds each: the read by the link (100 Mbit/s
is 11.9 MiB/s) and, clean, by the 2 shared cores; the others by round trips
(TCP retransmits a lost packet after about 200 ms, so 1 % loss costs the
operations that hit one). Writes a section between
<!-- bench/faults:results:begin --> and <!-- bench/faults:results:end --> of
--doc (default docs/performance.md; --no-doc only prints). Needs root,
iproute2, nftables, tc, iptables, ping and mpirun. The cluster is taken down on exit, failure,
Ctrl-C or SIGTERM (cluster-sim.sh down: nothing left behind).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dsdfsbench import docs, tables  # noqa: E402
from dsdfsbench.common import DEFAULT_DOC, REPO, BenchError, log, set_log  # noqa: E402

PROG = "bench/faults.py"
DOC_TOOL = "bench/faults"
SIM = os.path.join(REPO, "scripts", "cluster-sim.sh")
NODES = 3
OWNER, READER = 2, 3
DELAY_QUEUE = 7  # the NFQUEUE number of the delay line, in each node's own namespace

# Runs inside node READER: one measurement, printed as JSON.
NODE_SNIPPET = r"""
import json, os, sys, time
what, arg = sys.argv[1], sys.argv[2]
t0 = time.monotonic()
if what == "read":
    n = 0
    with open(arg, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            n += len(b)
    out = {"mib_s": n / (1 << 20) / (time.monotonic() - t0), "bytes": n}
elif what == "append":
    fd = os.open(arg, os.O_WRONLY | os.O_APPEND)
    rec = b"x" * 63 + b"\n"
    for _ in range(2000):
        os.write(fd, rec)
    os.close(fd)
    out = {"rate": 2000 / (time.monotonic() - t0)}
elif what == "stat":
    names = sorted(os.listdir(arg))
    t0 = time.monotonic()
    for n in names:
        os.stat(os.path.join(arg, n))
    out = {"rate": len(names) / (time.monotonic() - t0), "count": len(names)}
elif what == "create":
    os.mkdir(arg)
    t0 = time.monotonic()
    for i in range(300):
        os.close(os.open(os.path.join(arg, "f%d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
    out = {"rate": 300 / (time.monotonic() - t0)}
print(json.dumps(out))
"""


class Cluster:
    """One emulated cluster of this bench's own (prefix bf<pid>, subnet 10.77.250-253)."""

    def __init__(self, launcher, delay_line):
        self.env = dict(os.environ)
        self.env["DSDFS_SIM_PREFIX"] = ("bf%x" % os.getpid())[:8]
        self.env["DSDFS_SIM_DIR"] = "/tmp/dsdfs-benchfaults-" + self.env["DSDFS_SIM_PREFIX"]
        self.env["DSDFS_SIM_NODES"] = str(NODES)
        self.env["DSDFS_LAUNCH"] = launcher
        self.env["DSDFS_SIM_NET"] = self.free_net()
        self.up = False
        self.delay_line = delay_line
        self.delay_lines, self.delay_stats = {}, {}

    @staticmethod
    def free_net():
        used = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
        for x in range(250, 254):
            if f" 10.77.{x}." not in used:
                return f"10.77.{x}"
        raise BenchError("no free subnet in 10.77.250-253")

    def sim(self, *args, timeout=120, check=True):
        r = subprocess.run([SIM, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise BenchError(f"cluster-sim.sh {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()[-600:]}")
        return r

    def on(self, k, *cmd, timeout=120):
        return self.sim("exec", str(k), *cmd, timeout=timeout)

    def delay_line_on(self, k, ms):
        """Node k holds every packet it sends out of eth0 for ms (the delay line)."""
        p = subprocess.Popen([SIM, "exec", str(k), self.delay_line, "--queue", str(DELAY_QUEUE), "--delay-us",
                              str(round(ms * 1000))], env=self.env, stdout=subprocess.PIPE, text=True)
        self.delay_lines[k] = p
        ready = p.stdout.readline()
        if not ready.startswith("ready "):
            raise BenchError(f"node{k}: the delay line did not start ({ready.strip() or 'exit ' + str(p.wait())})")
        self.on(k, "iptables", "-A", "OUTPUT", "-o", "eth0", "-j", "NFQUEUE", "--queue-num", str(DELAY_QUEUE))

    def delay_line_off(self, k):
        p = self.delay_lines.pop(k, None)
        if p is None:
            return
        try:
            self.on(k, "iptables", "-D", "OUTPUT", "-o", "eth0", "-j", "NFQUEUE", "--queue-num", str(DELAY_QUEUE))
        finally:
            p.terminate()
            out, _ = p.communicate(timeout=30)
            self.delay_stats[k] = out.strip().splitlines()[-1] if out.strip() else ""

    def rtt_ms(self, k, addr):
        """ping's average round trip from node k to addr (20 pings), in ms."""
        r = self.on(k, "ping", "-n", "-q", "-c", "20", "-i", "0.02", addr, timeout=60)
        for line in r.stdout.splitlines():
            if line.startswith("rtt ") or line.startswith("round-trip"):
                return float(line.split("=")[1].split("/")[1])
        raise BenchError(f"ping from node{k} to {addr} gave no round trip: {r.stdout.strip()[-200:]}")

    def start(self):
        self.up = True
        self.sim("up", timeout=90)
        self.sim("start-dsdfs", "-t", "90", "--", "--timeout", "5", timeout=150)

    def down(self):
        for k in list(self.delay_lines):
            p = self.delay_lines.pop(k)
            p.terminate()
            p.wait(timeout=30)
        if self.up:
            self.sim("down", "--force", timeout=150, check=False)
            self.up = False

    def measure(self, what, arg):
        r = self.on(READER, "python3", "-c", NODE_SNIPPET, what, arg, timeout=600)
        return json.loads(r.stdout.strip().splitlines()[-1])


class Condition:
    def __init__(self, name, on, off):
        self.name, self.on, self.off = name, on, off


def conditions(c, delays):
    def each(fn):
        def all_nodes():
            for k in range(1, NODES + 1):
                fn(k)
        return all_nodes

    def loss_on(k):
        c.on(k, "nft", "add", "table", "inet", "benchloss", timeout=30)
        c.on(k, "nft", "add chain inet benchloss out { type filter hook output priority 0 ; policy accept ; }",
             timeout=30)
        c.on(k, "nft", "add rule inet benchloss out oifname eth0 numgen random mod 100 < 1 counter drop", timeout=30)

    out = [Condition("clean", lambda: None, lambda: None),
           Condition("loss1", each(loss_on), each(lambda k: c.on(k, "nft", "delete", "table", "inet", "benchloss"))),
           Condition("tbf100",
                     each(lambda k: c.on(k, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "100mbit",
                                         "burst", "64kb", "latency", "50ms")),
                     each(lambda k: c.on(k, "tc", "qdisc", "del", "dev", "eth0", "root")))]
    for d in delays.rtts:
        if delays.how == "netem":
            out.append(Condition(f"delay{d:g}",
                                 each(lambda k, d=d: c.on(k, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                                                          "delay", f"{d / 2:g}ms")),
                                 each(lambda k: c.on(k, "tc", "qdisc", "del", "dev", "eth0", "root"))))
        else:
            out.append(Condition(f"delay{d:g}", each(lambda k, d=d: c.delay_line_on(k, d / 2)),
                                 each(c.delay_line_off)))
    return out


class Delays:
    """How this machine adds latency: tc netem, the delay line, or not at all."""

    def __init__(self, delay_line):
        self.rtts, self.how = [0.2, 2.0], "netem"
        r = subprocess.run(["sh", "-c", "ip link add bnchtst0 type dummy && tc qdisc add dev bnchtst0 root netem "
                            "delay 1ms; rc=$?; ip link del bnchtst0 2>/dev/null; exit $rc"], capture_output=True)
        if r.returncode == 0:
            return
        self.how = "delay line"
        if not (os.access(delay_line, os.X_OK) and shutil.which("iptables") and shutil.which("ping")):
            self.rtts, self.how = [], None


def main():
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument("--launcher", default=os.path.join(REPO, "build", "launcher", "dsdfs-launch"))
    ap.add_argument("--delay-line", default=os.path.join(REPO, "build", "tests", "sim", "dsdfs-sim-delay-line"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--doc", default=DEFAULT_DOC)
    ap.add_argument("--no-doc", action="store_true")
    o = ap.parse_args()
    set_log(PROG)
    if os.geteuid() != 0:
        raise BenchError("needs root (namespaces, mounts, tc, nftables)")
    launcher = os.path.abspath(o.launcher)
    if not os.access(launcher, os.X_OK):
        raise BenchError(f"{launcher} is not an executable (build first, or --launcher)")
    delays = Delays(os.path.abspath(o.delay_line))
    c = Cluster(launcher, os.path.abspath(o.delay_line))

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    results = {}
    t_start = time.monotonic()
    try:
        c.start()
        log(f"cluster {c.env['DSDFS_SIM_PREFIX']} ({c.env['DSDFS_SIM_NET']}.0/24): dsdfs on {NODES} nodes")
        c.on(OWNER, "sh", "-c", "mkdir -p /shared/stat && cd /shared/stat && for i in $(seq 300); do : > s$i; done"
             " && : > /shared/log")
        conds = conditions(c, delays)
        for rep in range(o.reps):
            for cond in conds:
                cond.on()
                try:
                    tag = f"{cond.name}.{rep}"
                    c.on(OWNER, "sh", "-c", f"head -c 33554432 /dev/urandom > /shared/big.{tag}")
                    r = results.setdefault(cond.name, {"rtt": [], "read": [], "append": [], "stat": [], "create": []})
                    r["rtt"].append(c.rtt_ms(READER, f"{c.env['DSDFS_SIM_NET']}.{OWNER}"))
                    r["read"].append(c.measure("read", f"/shared/big.{tag}")["mib_s"])
                    r["append"].append(c.measure("append", "/shared/log")["rate"])
                    r["stat"].append(c.measure("stat", "/shared/stat")["rate"])
                    r["create"].append(c.measure("create", f"/shared/new.{tag}")["rate"])
                    c.on(OWNER, "rm", "-f", f"/shared/big.{tag}")
                finally:
                    cond.off()
                log(f"rep {rep + 1}/{o.reps} {cond.name}: rtt {r['rtt'][-1]:.3f} ms, read {r['read'][-1]:.1f} MiB/s, "
                    f"append {r['append'][-1]:.0f}/s, stat {r['stat'][-1]:.0f}/s, create {r['create'][-1]:.0f}/s")
    finally:
        c.down()
    body = report(results, delays, o.reps, time.monotonic() - t_start, c.delay_stats.get(OWNER, ""))
    print(body)
    if not o.no_doc:
        docs.write_section(o.doc, DOC_TOOL, "results", body, append_title="Network faults on the emulated cluster")
        log(f"wrote the results into {o.doc}")


def round_trips_per_op(results):
    """['append 1.1 (delay2)', ...]: how many round trips each call waits, from the largest added delay."""
    delayed = sorted((k for k in results if k.startswith("delay")), key=lambda k: float(k[5:]))
    if not delayed or "clean" not in results:
        return []
    d, c = results[delayed[-1]], results["clean"]
    extra_rtt = tables.median(d["rtt"]) - tables.median(c["rtt"])
    if extra_rtt <= 0:
        return []
    out = []
    for m in ("append", "stat", "create"):
        extra = 1e3 / tables.median(d[m]) - 1e3 / tables.median(c[m])
        out.append(f"{m} {extra / extra_rtt:.1f}")
    return [", ".join(out) + f" ({delayed[-1]})"]


def report(results, delays, reps, elapsed, stats=""):
    clean = results["clean"]
    metrics = [("rtt", "round trip ms"), ("read", "read MiB/s"), ("append", "appends/s"), ("stat", "stats/s"), ("create", "creates/s")]
    L = [f"`{PROG}`, {NODES} emulated nodes on this machine (scripts/cluster-sim.sh), node3 acting on node2's files; "
         f"{reps} interleaved repetitions, median (range), ratio to the clean run of the same bench "
         f"({elapsed:.0f} s in all).", ""]
    L += tables.header([("condition", "l")] + [(t, "r") for _, t in metrics])
    for name, r in results.items():
        cells = [name]
        for m, _ in metrics:
            med = tables.median(r[m])
            if m == "rtt":
                cells.append(tables.median_range(r[m], 3))
                continue
            cells.append(f"{tables.median_range(r[m], 1 if m == 'read' else 0)}"
                         + ("" if name == "clean" else f" ({tables.fmt_x(tables.ratio(med, tables.median(clean[m])))})"))
        L.append(tables.row(cells))
    if "tbf100" in results:
        tbf = tables.median(results["tbf100"]["read"])
        L += ["", f"Bounds: 100 Mbit/s is 11.9 MiB/s, and the read under `tbf100` ran at {tbf / 11.92:.0%} of it. "
              "With 1 % loss a bulk transfer keeps its pace (TCP retransmits from selective acks at once), but a "
              "small request or reply that is lost has nothing behind it to trigger that: it waits for TCP's "
              "retransmission timeout (200 ms at least), which is what the per-call rates under `loss1` measure. "
              "Clean, the 2 shared cores bound every figure (the table of `bench/cluster.py` compares them "
              "with UCX's own)."]
    if delays.how == "delay line":
        L += ["", "Added latency: this kernel has no `sch_netem`, so each node's delay line "
              "(`tests/sim/delay_line.cc`, through iptables' NFQUEUE) holds what the node sends for half of "
              "0.2 ms or 2 ms; the round trip column is what ping measured from node3 to node2 under each "
              "condition, which includes the delay line's own wake-up lateness (about 0.1 ms a hop on this "
              "machine). Each append, stat and create is a round trip or more, so their rates fall with it."]
        clean_read = tables.median(results["clean"]["read"])
        for name in (k for k in results if k.startswith("delay")):
            rtt, mib = tables.median(results[name]["rtt"]), tables.median(results[name]["read"])
            if mib >= 0.8 * clean_read:
                continue
            L += ["", f"The read under `{name}` ({mib:.0f} MiB/s at a {rtt:.2f} ms round trip) kept "
                  f"{mib * (1 << 20) * rtt / 1e3 / 1024:.0f} KiB in flight per round trip (the bandwidth-delay "
                  "product): dsdfs asks for whole 1 MiB chunks, several ahead, so where this is below 1 MiB "
                  "something under the chunk (UCX's TCP transport, the owner's sending) bounds it; not "
                  "investigated here."]
        rts = round_trips_per_op(results)
        if rts:
            L += ["", "Round trips per operation, from the added delay: (time per operation with the delay - "
                  "without) / (round trip with - without): " + "; ".join(rts) + ". This is what a fabric's "
                  "latency costs each call (issue 11's RPC counts)."]
        if stats:
            L += ["", "The delay line on node2 in the last run: " + stats]
    elif not delays.how:
        L += ["", "Added latency (0.2 ms and 2 ms round trip) is not measured: this kernel has no `sch_netem`, "
              "and the delay line (`dsdfs-sim-delay-line`, iptables, ping) is not there."]
    return "\n".join(L)


if __name__ == "__main__":
    try:
        main()
    except (BenchError, KeyboardInterrupt) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(1)
