#!/usr/bin/env python3
"""Ratios from the reference runner's output files (system=... test=... value=... lines),
all against the bare table measured in the same run."""
import collections, glob, os, re, statistics, sys

out = sys.argv[1]
values = collections.defaultdict(list)
for path in glob.glob(os.path.join(out, "*.txt")):
    for line in open(path):
        m = re.match(r"system=(\S+) test=(\S+) value=(\S+) unit=(\S+)", line)
        if m and m.group(3) != "NaN":
            system, test = m.group(1), re.sub(r"_rep\d+", "", m.group(2))
            values[(system, test)].append(float(m.group(3)))

def mean(system, test):
    v = values.get((system, test))
    return statistics.mean(v) if v else None

def ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else "%.2f" % (a / b)

systems = sorted({s for s, _ in values if s.startswith("pg_beacon")})
bare_w1, bare_w2 = mean("bare", "W1_bulk_0views"), mean("bare", "W2_oltp_0views_tps")
spread = lambda test: "%d..%d" % (min(values[("bare", test)]), max(values[("bare", test)])) if values.get(("bare", test)) else "n/a"
print("bare: bulk %s rows/s (runs: %s), OLTP %s tx/s (runs: %s)"
      % (round(bare_w1 or 0), spread("W1_bulk_0views"), round(bare_w2 or 0), spread("W2_oltp_0views_tps")))
for s in systems:
    print("%s:" % s)
    for nv in (1, 3):
        w1, w2 = mean(s, "W1_bulk_%dviews" % nv), mean(s, "W2_oltp_%dviews_tps" % nv)
        print("  bulk rows/s with %d continuous quer%s = %s x bare (%s rows/s)"
              % (nv, "y" if nv == 1 else "ies", ratio(w1, bare_w1), round(w1 or 0)))
        print("  OLTP tx/s  with %d continuous quer%s = %s x bare (%s tx/s)"
              % (nv, "y" if nv == 1 else "ies", ratio(w2, bare_w2), round(w2 or 0)))
    for v in ("v1", "v2", "v3"):
        raw, read = mean(s, "R_select_raw_%s" % v), mean(s, "R_read_%s" % v)
        mv = mean("matview", "R_read_%s" % v)
        print("  read %s: %.1f ms = %s x faster than its defining query (%.1f ms); %s x a refreshed matview read (%.1f ms)"
              % (v, read or 0, ratio(raw, read), raw or 0, ratio(read, mv), mv or 0))
    for prefix in ("W1_bulk_3views", "W2_oltp_3views"):
        exact = [mean(s, "%s_check_%s_exact" % (prefix, v)) for v in ("v1", "v2", "v3")]
        tol = [mean(s, "%s_check_%s_tol1e-9" % (prefix, v)) for v in ("v1", "v2", "v3")]
        print("  %s correctness: rows differing exact %s, with 1e-9 tolerance %s" % (prefix, exact, tol))
    lag = os.path.join(out, s + ".lag")
    if os.path.exists(lag):
        samples = [float(x) for x in open(lag).read().split() if x.strip()]
        if samples:
            print("  async lag under OLTP load: max %.2f s, median %.2f s over %d samples"
                  % (max(samples), statistics.median(samples), len(samples)))
