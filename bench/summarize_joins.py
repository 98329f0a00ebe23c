#!/usr/bin/env python3
"""Ratios of the join workload's runner output (system=... test=... value=... lines), against
the bare tables measured in the same run (the mean of the runs before and after), next to
pg_ivm 1.15's figures from ../shared/bench/join-workload/anchor-results-pg_ivm-1.15.txt."""
import collections, glob, os, re, statistics, sys

out = sys.argv[1]
values = collections.defaultdict(list)
for path in glob.glob(os.path.join(out, "*.txt")):
    if path.endswith("summary.txt"):
        continue
    for line in open(path):
        m = re.match(r"system=(\S+) test=(\S+) value=(\S+) unit=(\S+)", line)
        if m and m.group(3) != "NaN":
            values[(m.group(1), re.sub(r"_rep\d+", "", m.group(2)))].append(float(m.group(3)))

def mean(system, test):
    v = values.get((system, test))
    return statistics.mean(v) if v else None

def ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else "%.3f" % (a / b)

IVM = {"W1": 0.088, "W2": 0.072, "W3": 0.025}
bare = {"W1": mean("bare", "W1_bulk_0views"), "W2": mean("bare", "W2_oltp_0views_tps"),
        "W3": mean("bare", "W3_mixed_0views_tps")}
print("bare: bulk %s rows/s, OLTP %s tx/s, mixed %s tx/s"
      % tuple(round(bare[k] or 0) for k in ("W1", "W2", "W3")))
for s in sorted({s for s, _ in values if s.startswith("pg_beacon")}):
    print("%s:" % s)
    for nv in (1, 3):
        w1 = mean(s, "W1_bulk_%dviews" % nv)
        w2 = mean(s, "W2_oltp_%dviews_tps" % nv)
        print("  %d join view%s: bulk %s x bare (%s rows/s), OLTP %s x bare (%s tx/s)%s"
              % (nv, "" if nv == 1 else "s", ratio(w1, bare["W1"]), round(w1 or 0),
                 ratio(w2, bare["W2"]), round(w2 or 0),
                 "; pg_ivm 1.15: bulk %.3f, OLTP %.3f" % (IVM["W1"], IVM["W2"]) if nv == 3 else ""))
    w3 = mean(s, "W3_mixed_3views_tps")
    if w3:
        lat = mean(s, "W3_mixed_3views_latency_avg")
        print("  mixed W3 (1 product update : 9 inserts, advised indexes): %s x bare (%s tx/s, %.3f ms avg); pg_ivm 1.15: %.3f; failed tx: %s"
              % (ratio(w3, bare["W3"]), round(w3), lat or 0, IVM["W3"], mean(s, "W3_mixed_3views_failed")))
    for v in ("j1", "j2", "j3"):
        raw, read = mean(s, "R_select_raw_%s" % v), mean(s, "R_read_%s" % v)
        if read:
            print("  read %s: %.2f ms = %s x faster than its defining query (%.1f ms)"
                  % (v, read, ratio(raw, read), raw or 0))
    for prefix in ("W1_bulk_3views", "W2_oltp_3views", "W3_mixed_3views"):
        tol = [mean(s, "%s_check_%s_tol1e-9" % (prefix, v)) for v in ("j1", "j2", "j3")]
        if any(t is not None for t in tol):
            print("  %s: rows differing beyond 1e-9 %s" % (prefix, tol))
