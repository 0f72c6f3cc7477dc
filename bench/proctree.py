"""A process tree's resources, for the benchmarks (bench/run.sh, bench/forward_auth.sh).

  proctree.py cpu PID   utime+stime (+cutime+cstime) in clock ticks, summed over PID
                        and every descendant
  proctree.py rss PID   the sum of their VmRSS in KiB, and how many processes

Descendants are found by walking the ppid field of every /proc/*/stat.
"""
import os, sys

def stats():
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
        # ppid; utime+stime (14, 15) and cutime+cstime (16, 17: children it has reaped,
        # e.g. an nginx worker that was replaced; a child's time moves there when it exits)
        out[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    return out

def tree(root, st):
    kids = {}
    for pid, (ppid, _) in st.items():
        kids.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in st:
            found.append(pid)
            todo.extend(kids.get(pid, []))
    return found

what, root = sys.argv[1], int(sys.argv[2])
st = stats()
pids = tree(root, st)
if not pids:
    sys.exit("bench: process %d is gone" % root)
if what == "cpu":
    print(sum(st[p][1] for p in pids))
else:
    kib = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                kib += next((int(l.split()[1]) for l in f if l.startswith("VmRSS:")), 0)
        except OSError:
            pass
    print(kib, len(pids))
