"""Turns bench/all's JSON lines into the Markdown table of BENCHMARKS.md: ratio to the ceiling
first, then the absolute numbers, under the machine, the commit and the build it ran on.

    python3 bench/table.py RESULTS.jsonl BUILD > table.md
"""
import json
import os
import platform
import subprocess
import sys
import time

results = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
build = sys.argv[2] if len(sys.argv) > 2 else "?"
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "-C", root, "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
memory = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0) / 1024 / 1024


def number(value):
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


print(f"Machine: {os.cpu_count()} vCPU {cpu}, {memory:.0f} GiB, {platform.system()} {platform.release()}; "
      f"commit {commit}{' (with local changes)' if dirty else ''}; build: {build}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
print()
print("| ratio | benchmark | case | measured | ceiling or goal | details |")
print("|---|---|---|---|---|---|")
for r in results:
    ratio = f"**{r['ratio']:.2f}×**" if r.get("ratio") is not None else "–"
    ceiling = f"{number(r['ceiling'])} {r['unit']} ({r['ceiling_name']})" if r.get("ceiling") else "–"
    known = {"bench", "case", "value", "unit", "ceiling", "ceiling_name", "ratio"}
    details = ", ".join(f"{k.replace('_', ' ')} {number(v) if isinstance(v, (int, float)) else v}"
                        for k, v in r.items() if k not in known and v is not None)
    print(f"| {ratio} | {r['bench']} | {r['case']} | {number(r['value'])} {r['unit']} | {ceiling} | {details or '–'} |")
