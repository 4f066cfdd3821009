#!/usr/bin/env python3
"""Reads the raw outputs scripts/bench.sh saved (target/bench/*.out) and writes one table
(summary.md, also printed) and a plot of the Omega-vs-peer ratios (summary.svg).

Only figures a bench printed are shown; a missing output is a row that says so, never a
made-up number. Standard library only."""

import datetime
import html
import math
import os
import platform
import re
import sys


def read(out_dir, name):
    try:
        with open(os.path.join(out_dir, name + ".out"), encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def duration_us(text):
    """A Rust Debug duration (`1.23µs`, `456ns`, `7.8ms`) in microseconds."""
    m = re.fullmatch(r"([0-9.]+)(ns|µs|us|ms|s)", text)
    if not m:
        return None
    scale = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}[m.group(2)]
    return float(m.group(1)) * scale


def rows(out_dir):
    """(measure, omega, peer, ratio text, ratio for the plot or None, goal)"""
    out = []
    boot = read(out_dir, "boot")
    if boot:
        r = dict(
            (m.group(1), (float(m.group(2)), float(m.group(3))))
            for m in re.finditer(r"^RESULT (\w+) omega=([0-9.]+) peer=([0-9.]+)$", boot, re.M)
        )
        if "boot_wall_ms" in r:
            o, p = r["boot_wall_ms"]
            out.append(("boot to first agent ready, wall clock (TCG)", f"{o:.0f} ms",
                        f"Linux + busybox to /init: {p:.0f} ms", f"{p / o:.1f}x faster", p / o, ">= 20x"))
        if "boot_cpu_ms" in r:
            o, p = r["boot_cpu_ms"]
            out.append(("boot to first agent ready, QEMU CPU time", f"{o:.0f} ms",
                        f"{p:.0f} ms", f"{p / o:.1f}x less", p / o, ">= 20x"))
        if "image_kib" in r:
            o, p = r["image_kib"]
            out.append(("image size", f"{o:.0f} KiB", f"kernel + initramfs: {p:.0f} KiB",
                        f"{p / o:.1f}x smaller", p / o, ""))
    else:
        out.append(("boot to first agent ready", "not run", "", "", None, ">= 20x"))

    policy = read(out_dir, "policy")
    omega = best = None
    if policy:
        # The first table (steady state): Omega's row, then the best regorus line.
        m = re.search(r"^omega \(decode \+ evaluate\)\s+(\S+)", policy, re.M)
        omega = m and duration_us(m.group(1))
        table = policy.split("cold caches")[0]
        peers = [(duration_us(m.group(2)), m.group(1).strip())
                 for m in re.finditer(r"^(regorus[^\n]*?)\s{2,}(\S+)\s", table, re.M)]
        peers = [p for p in peers if p[0] is not None]
        best = min(peers) if peers else None
    if omega and best:
        out.append(("policy decision from JSON text, p50", f"{omega:.2f} µs",
                    f"{best[1]}: {best[0]:.2f} µs", f"{best[0] / omega:.0f}x faster",
                    best[0] / omega, ">= 20x"))
    else:
        out.append(("policy decision vs regorus", "not run", "", "", None, ">= 20x"))

    agents = read(out_dir, "agents")
    m = agents and re.search(r"instantiate \(1 page.*?p50 ([0-9.]+) µs", agents)
    if m:
        out.append(("agent instantiation (native), p50", f"{float(m.group(1)):.0f} µs", "", "",
                    None, "<= 1 ms"))
    m = agents and re.search(r"idle agent memory.*?: ([0-9.]+) KiB each.*?-> (\d+) agents per GiB", agents)
    if m:
        out.append(("idle agents per GiB (runtime measured natively, 1-page agents)", f"{m.group(2)} ({float(m.group(1)):.0f} KiB each)",
                    "", "", None, ">= 2,000"))
    m = agents and re.search(r"keeps ([0-9.]+) % of its solo", agents)
    if m:
        out.append(("fairness: pair's rate with 100 spinners", f"{float(m.group(1)):.0f} %", "", "",
                    None, ">= 50 %"))
    if not agents:
        out.append(("agents (density, start, fairness)", "not run", "", "", None, ""))

    density = read(out_dir, "density")
    runs = re.findall(r"agents started: (\d+) of (\d+).*?memory per idle agent: ([0-9.]+) KiB"
                      r".*?host CPU while \d+ agents idle: ([0-9.]+) %", density or "", re.S)
    if runs:
        started, _, kib, _ = max(runs, key=lambda r: int(r[0]))
        out.append(("idle agents started in a 1 GiB guest (the image, TCG)", f"{started} ({float(kib):.0f} KiB each)",
                    "", "", None, ">= 2,000"))
        for started, _, _, cpu in runs:
            out.append((f"host CPU with {started} idle agents (the image, TCG)", f"{float(cpu):.2f} % of a core",
                        "", "", None, "<= 1 % (100 agents)"))
    else:
        out.append(("density in the image (agents-bench)", "not run", "", "", None, ""))

    a2a = read(out_dir, "a2a")
    if a2a:
        block = a2a.split("with a 1024 B")[0]
        p50s = re.findall(r"p50\s+([0-9.]+) µs", block)
        if len(p50s) >= 2:
            o, p = float(p50s[0]), float(p50s[1])
            out.append(("agent message round trip, 64 B, p50", f"{o:.2f} µs",
                        f"a2a-sdk over HTTP: {p:.0f} µs", f"{p / o:.0f}x faster", p / o, ">= 20x"))
        else:
            out.append(("agent message round trip vs A2A", "Omega side only (no a2a-sdk)", "", "", None, ">= 20x"))
    else:
        out.append(("agent message round trip vs A2A", "not run", "", "", None, ">= 20x"))

    tools = read(out_dir, "tools")
    found = False
    for m in re.finditer(r"^(.*?): \d+ calls each \| direct p50 (\d+) us p99 \d+ us \| gateway p50 (\d+) us",
                         tools or "", re.M):
        found = True
        d, g = float(m.group(2)), float(m.group(3))
        out.append((f"MCP tools/call, {m.group(1)}, p50", f"{g:.0f} µs", f"direct: {d:.0f} µs",
                    f"+{g - d:.0f} µs", None, "<= 1 ms added"))
    if not found:
        out.append(("MCP tools/call overhead", "not run", "", "", None, "<= 1 ms added"))

    proxy = read(out_dir, "proxy")
    d = proxy and re.search(r"^direct\s+ttft\s+([0-9.]+) ms\s+end-to-end\s+([0-9.]+) tok/s", proxy, re.M)
    p = proxy and re.search(r"^proxy\s+ttft\s+([0-9.]+) ms\s+end-to-end\s+([0-9.]+) tok/s", proxy, re.M)
    if d and p:
        dt, pt = float(d.group(2)), float(p.group(2))
        out.append(("tokens/s through omega-proxy (not yet through the guest)", f"{pt:.1f} tok/s",
                    f"llama.cpp directly: {dt:.1f} tok/s", f"{100 * pt / dt:.1f} %", None, ""))
    else:
        out.append(("tokens/s through the proxy", "not run", "", "", None, ""))

    inf = read(out_dir, "inference")
    d = inf and re.search(r"^direct\s+ttft\s+([0-9.]+) ms\s+end-to-end\s+([0-9.]+) tok/s", inf, re.M)
    g = inf and re.search(r"^guest\s+ttft\s+([0-9.]+) ms\s+end-to-end\s+([0-9.]+) tok/s", inf, re.M)
    if d and g:
        dt, gt = float(d.group(2)), float(g.group(2))
        out.append(("tokens/s through the guest (agent, monitor, channel, TLS, proxy)", f"{gt:.1f} tok/s",
                    f"the proxy's plain port: {dt:.1f} tok/s", f"{100 * gt / dt:.1f} %", None,
                    ">= 98 %"))
        out.append(("time to first token through the guest", f"{float(g.group(1)):.1f} ms",
                    f"plain port: {float(d.group(1)):.1f} ms",
                    f"{float(g.group(1)) - float(d.group(1)):+.1f} ms", None, "<= +20 ms"))
    else:
        out.append(("tokens/s through the guest", "not run", "", "", None, ">= 98 %"))

    logs = read(out_dir, "log")
    m = logs and re.search(r"bytes/entry\s+metadata-only n=\s*1000000: ([0-9.]+) B entries.*?= ([0-9.]+) B", logs)
    if m:
        out.append(("provenance log bytes per entry (metadata only, with checkpoints)",
                    f"{float(m.group(2)):.1f} B", "", "", None, ""))
    else:
        out.append(("provenance log bytes per entry", "not run", "", "", None, ""))
    return out


def svg(rows_, path):
    bars = [(r[0], r[4]) for r in rows_ if r[4]]
    if not bars:
        return
    width, left, bar_h, gap = 900, 360, 22, 10
    height = 60 + len(bars) * (bar_h + gap)
    top = max(math.log10(max(v for _, v in bars)), 1.0)
    scale = (width - left - 80) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="13">',
             f'<text x="10" y="22" font-size="15" font-weight="bold">Omega vs its peer '
             '(how many times better; log scale; the dashed line is 20x)</text>']
    x20 = left + math.log10(20) * scale
    for i, (name, v) in enumerate(bars):
        y = 40 + i * (bar_h + gap)
        w = max(math.log10(max(v, 1.0)) * scale, 1)
        parts.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{html.escape(name)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#3b6ea8"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 16}">{v:.1f}x</text>')
    parts.append(f'<line x1="{x20:.1f}" y1="34" x2="{x20:.1f}" y2="{height - 10}" '
                 'stroke="#c33" stroke-dasharray="4,3"/>')
    parts.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "target/bench"
    rs = rows(out_dir)
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu = m.group(1) if m else ""
    except OSError:
        pass
    lines = [f"Measured {datetime.date.today().isoformat()} on {platform.node()}: {cpu}, "
             f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end "
             "(`bash scripts/bench.sh`)", "",
             "| measure | Omega | peer | Omega vs peer | goal |", "|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[5]} |" for r in rs]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    svg(rs, os.path.join(out_dir, "summary.svg"))
    print(text)
    print(f"written: {out_dir}/summary.md, {out_dir}/summary.svg")


if __name__ == "__main__":
    main()
