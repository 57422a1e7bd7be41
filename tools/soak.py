#!/usr/bin/env python3
"""Randomized soak of the real binary: longer and wider than the property
tests in tests/it/, for hunting bugs before a release, not for CI.

  python3 tools/soak.py incremental SEEDS   # incremental run == full rebuild; history ends on state
  python3 tools/soak.py plan SEEDS          # the same, each run first --dry-run: it says what the run does
  python3 tools/soak.py kill SEEDS          # kill -9 at random moments (runs, retracts, erases), re-run == clean lake
  python3 tools/soak.py interrupt SEEDS     # SIGINT/SIGTERM/SIGHUP instead: a clean stop, re-run == clean lake
  python3 tools/soak.py known-at SEEDS      # state --known-at P == the state of a lake fed up to P
  python3 tools/soak.py grow SEEDS          # a file appended to between runs lands once
  python3 tools/soak.py readers SEEDS       # readers beside a writer never fail or see a row twice
  python3 tools/soak.py full-disk SEEDS     # steps run out of disk (a capped tmpfs; root), re-run == clean lake

SEEDS is `N` (0..N) or `A..B`. Each seed draws its own data (`evlake
generate`: users, days, late and bad rates) and settings (session gap,
late policy with `reconcile`, `silver --dates` restatements, re-runs
that must be no-ops, inputs retracted (some then taken in again with
`--reingest-retracted`), users erased, snapshots, a daily snapshot policy with
`snapshot_keep`, `[log] retention` with a checkpoint every 5 commits). A failing seed keeps its directory under
$SOAK_DIR (default /tmp/evlake-soak) and is printed with what differed;
`make soak` runs all eight (full-disk only as root). EVLAKE=path picks the binary (default: the
debug build).
"""
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys

E = os.environ.get("EVLAKE") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/evlake-target")), "debug", "evlake")
ROOT = os.environ.get("SOAK_DIR", "/tmp/evlake-soak")
TABLES = ["events", "sessions", "purchases", "searches", "signups", "cart_adds", "ledger",
          "daily_metrics", "daily_revenue_by_currency", "bronze_events", "bronze_late"]
MODELS = ["balances", "carts", "profiles"]


def ev(lake, *args, check=True):
    p = subprocess.run([E, "--lake", lake, *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"evlake {' '.join(args)}: exit {p.returncode}\n{p.stderr[-3000:]}")
    return p


# A lake's own typed table, for the lakes that have one (the others
# dump it as an error, alike). With a struct and a list column: late
# batches patch its files' session ids past their nested leaves. (No
# `page_url,` but the selected one: the edit below replaces each.)
OWN_TYPED = """SELECT event_id, user_id, session_id, event_timestamp, event_date, page_url,
       named_struct('n', 1, 'url', page_url) AS link, [event_type] AS kinds,
       0 AS _warnings
FROM events WHERE event_type = 'page_view'
"""
# The same table edited: what a lake's runs meet when its file changes
# (without user_id, so an erase tells its rows by event id).
OWN_TYPED_EDITED = OWN_TYPED.replace("page_url,", "upper(page_url) AS page_url,").replace(
    "user_id, ", "")


# A daily table of the lake's own, over events and sessions (dumped like
# the typed one).
OWN_DAILY = """SELECT e.event_date, count(DISTINCT e.user_id) AS users, count(*) AS events,
       (SELECT count(*) FROM sessions) AS sessions
FROM events e GROUP BY e.event_date
"""


def own_daily(lake):
    os.makedirs(os.path.join(lake, "daily"), exist_ok=True)
    with open(os.path.join(lake, "daily", "active_users.sql"), "w") as f:
        f.write(OWN_DAILY)


def own_typed(lake, sql):
    """Write (or with None remove) the lake's own page_views.sql."""
    path = os.path.join(lake, "typed", "page_views.sql")
    if sql is None:
        if os.path.exists(path):
            os.remove(path)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(sql)


def dump(lake):
    """Every table's header and sorted CSV rows (or the error reading it);
    JSON lines for the own typed table, whose nested columns CSV cannot
    hold."""
    out = {}
    for t in TABLES + ["page_views", "active_users"]:
        form = "json" if t == "page_views" else "csv"
        p = ev(lake, "query", f"SELECT * FROM {t}", "--format", form, check=False)
        if p.returncode != 0:
            out[t] = ("error", p.stderr.strip().splitlines()[-1:])
        else:
            lines = p.stdout.splitlines()
            out[t] = (lines[:1], sorted(lines[1:])) if form == "csv" else ([], sorted(lines))
    return out


def differences(a, b, what):
    """Print how dumps `a` and `b` differ; True if they do."""
    differ = False
    for t in TABLES + ["page_views", "active_users"]:
        if a[t] == b[t]:
            continue
        differ = True
        ra, rb = a[t][1], b[t][1]
        print(f"  MISMATCH {what}: {t}")
        if isinstance(ra, list) and isinstance(rb, list):
            sa, sb = set(ra), set(rb)
            for r in sorted(sa - sb)[:3]:
                print("    only in the first: ", r[:300])
            for r in sorted(sb - sa)[:3]:
                print("    only in the second:", r[:300])
        else:
            print(f"    {a[t]} vs {b[t]}")
    return differ


def generated(d, rng, seed, events, users, late_rates):
    gen = os.path.join(d, "gen")
    days = rng.randint(3, 8)
    ev(d, "generate", "--out", gen, "--events", str(rng.randint(*events)), "--seed", str(seed),
       "--days", str(days), "--users", str(rng.randint(*users)),
       "--late-rate", str(rng.choice(late_rates)), "--bad-rate", str(rng.choice([0, 0.01])))
    files = sorted(os.path.join(gen, "batches", f) for f in os.listdir(os.path.join(gen, "batches")))
    rng.shuffle(files)
    return files, days


def listing(lake):
    """Every file under the lake with its size and mtime (but the lock
    file's, which any command holds while it reads)."""
    out = {}
    for root, _, names in os.walk(lake):
        for n in names:
            path = os.path.join(root, n)
            rel = os.path.relpath(path, lake)
            if rel != os.path.join("_evlake", "lock"):
                st = os.stat(path)
                out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def planned_run(lake, run):
    """`run` after its `--dry-run`: the dry run changes no file, and says
    what the run then does. Returns the run's summary, or None (printed)."""
    if "--json" not in run:
        run = [*run, "--json"]
    before = listing(lake)
    dry = json.loads(ev(lake, *run, "--dry-run").stdout)
    after = listing(lake)
    if after != before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        print(f"  a dry run of {run} changed the lake: {changed[:10]}")
        return None
    real = json.loads(ev(lake, *run).stdout)
    bad = []
    di, ri = dry["ingest"], real["ingest"]
    if di is not None or ri is not None:
        keys = ["events", "quarantined", "late_events", "side_output_events", "resends",
                "id_conflicts", "ids_on_other_dates", "watermark", "watermark_before",
                "quarantined_by_reason"]
        for k in keys:
            if (di or {}).get(k) != (ri or {}).get(k):
                bad.append(f"ingest {k}: dry {(di or {}).get(k)} vs run {(ri or {}).get(k)}")
        part = lambda r: sorted((p["event_date"], p["events"], p["late"], p["side_output"])
                                for p in (r or {}).get("partitions", []))
        if part(di) != part(ri):
            bad.append(f"ingest partitions: dry {part(di)} vs run {part(ri)}")
    plan = dry["plan"]
    silver = (real["silver"] or {}).get("recomputed") or {}
    # Every date the run found dirty was planned, and every date planned
    # was found dirty or recomputed: session reach (a late event joining
    # sessions across midnight) can add neighbours, and a date whose new
    # rows are all re-sent copies is found dirty but no file rewritten.
    dirty = [x for x in (real["silver"] or {}).get("dirty", []) if x["table"] == "events"]
    if not set(plan["silver_dates"]) <= set(silver.get("events", [])) | {x["partition"] for x in dirty}:
        bad.append(f"silver dates: planned {plan['silver_dates']} vs recomputed"
                   f" {silver.get('events', [])}")
    unplanned = [x for x in dirty if x["partition"] not in plan["silver_dates"]]
    if unplanned:
        bad.append(f"silver found dirty what was not planned: {unplanned}")
    # (A typed date rebuilt with no rows has no file: the refresh names it.)
    refreshed = (((real["silver"] or {}).get("typed_refresh") or {}).get("tables") or {})
    for table, dates in plan["typed_tables"].items():
        done = set(silver.get(table, [])) | set(refreshed.get(table, []))
        if not set(dates) <= done:
            bad.append(f"typed {table}: planned {dates} vs rebuilt {sorted(done)}")
    gold = (real["gold"] or {}).get("recomputed") or {}
    if not set(plan["gold_dates"]) <= set(gold.get("daily_metrics", [])):
        bad.append(f"gold dates: planned {plan['gold_dates']} vs recomputed {gold.get('daily_metrics', [])}")
    snaps = lambda xs: sorted((x["model"], x["as_of"]) for x in xs)
    written = [s for s in real["snapshots"] if s["status"] != "noop"]
    if snaps(plan["snapshots"]) != snaps(written):
        bad.append(f"snapshots: planned {snaps(plan['snapshots'])} vs written {snaps(written)}")
    if snaps(plan["snapshots_removed"]) != snaps(real["snapshots_removed"]):
        bad.append(f"snapshots removed: planned {snaps(plan['snapshots_removed'])}"
                   f" vs removed {snaps(real['snapshots_removed'])}")
    compacted = sorted(p["event_date"] for p in ((real["compact"] or {}).get("partitions") or []))
    if sorted(plan["compact_dates"]) != compacted:
        bad.append(f"compact dates: planned {plan['compact_dates']} vs compacted {compacted}")
    # Then nothing is left to do: a dry run without inputs plans nothing.
    flags = run[next(i for i, a in enumerate(run) if a.startswith("--")):]
    left = json.loads(ev(lake, "run", *flags, "--dry-run").stdout)["plan"]
    left = {k: v for k, v in left.items() if v and (not isinstance(v, dict) or any(v.values()))}
    if left:
        bad.append(f"left to do after the run: {left}")
    if bad:
        print(f"  the dry run of {run[1:]} did not say what the run did:")
        for b in bad:
            print(f"    {b}")
        return None
    return real


def planned_step(lake, args):
    """`silver` or `gold` (`args`) after its `--dry-run`: the dry run
    changes no file, and plans what the step then does: silver at least
    the dates it finds dirty (session reach can add neighbours), gold
    exactly the dates it recomputes. Returns whether they agreed."""
    # Dates with no row in bronze or silver: restating one writes nothing,
    # so the step's report does not list it as recomputed.
    filled = {r["d"] for r in csv_rows(ev(
        lake, "query", "--format", "csv",
        "SELECT CAST(event_date AS VARCHAR) AS d FROM bronze_events "
        "UNION SELECT CAST(event_date AS VARCHAR) FROM events").stdout)}
    before = listing(lake)
    dry = json.loads(ev(lake, *args, "--dry-run", "--json").stdout)
    if listing(lake) != before:
        print(f"  a dry run of {args} changed the lake")
        return False
    real = json.loads(ev(lake, *args, "--json").stdout)
    plan, done, bad = dry["plan"], real["recomputed"], []
    if args[0] == "silver":
        dirty = {x["partition"] for x in real["dirty"] if x["table"] == "events"}
        if not set(plan["silver_dates"]) & filled <= set(done.get("events", [])) | dirty:
            bad.append(f"silver dates: planned {plan['silver_dates']} vs recomputed"
                       f" {done.get('events', [])}")
        if not dirty <= set(plan["silver_dates"]):
            bad.append(f"silver found dirty {sorted(dirty)}, planned {plan['silver_dates']}")
        refreshed = ((real.get("typed_refresh") or {}).get("tables") or {})
        for table, dates in plan["typed_tables"].items():
            if not set(dates) <= set(done.get(table, [])) | set(refreshed.get(table, [])):
                bad.append(f"typed {table}: planned {dates}")
    else:
        if plan["gold_dates"] != done.get("daily_metrics", []):
            bad.append(f"gold dates: planned {plan['gold_dates']} vs recomputed"
                       f" {done.get('daily_metrics', [])}")
        for table, dates in plan["daily_tables"].items():
            if not set(done.get(table, [])) <= set(dates):
                bad.append(f"daily {table}: planned {dates} vs recomputed {done.get(table, [])}")
    if bad:
        print(f"  the dry run of {args} did not say what it did:")
        for b in bad:
            print(f"    {b}")
        return False
    return True


def checked(lake):
    """`evlake check --deep` on the lake: every committed file is as the
    log says, and no file is there that no commit names (orphans)."""
    p = ev(lake, "check", "--deep", "--json", check=False)
    r = json.loads(p.stdout) if p.stdout.strip() else {}
    if p.returncode != 0 or r.get("problems") or r.get("orphans"):
        print(f"  check: exit {p.returncode}, problems {r.get('problems')},"
              f" orphans {(r.get('orphans') or [])[:5]}: {p.stderr[-1000:]}")
        return False
    return True


def csv_rows(text):
    import csv
    import io
    return list(csv.DictReader(io.StringIO(text)))


def history_agrees(lake, rng):
    """For a few entities of each model, `state --key` answers the whole
    state's rows for it, and the running state `history` ends on is that
    one (as of the end of time: every event)."""
    end = "2100-01-01"
    for model, key in (("balances", "account_id"), ("carts", "user_id"), ("profiles", "user_id")):
        rows = csv_rows(ev(lake, "state", model, "--as-of", end, "--format", "csv").stdout)
        keys = sorted({r[key] for r in rows})
        for k in rng.sample(keys, min(3, len(keys))):
            hist = csv_rows(ev(lake, "history", k, "--model", model, "--format", "csv").stdout)
            mine = [r for r in rows if r[key] == k]
            keyed = csv_rows(ev(lake, "state", model, "--as-of", end, "--key", k, "--format", "csv").stdout)
            if keyed != mine:
                print(f"  state {model} --key {k} answers {keyed}, the whole state's rows are {mine}")
                return False
            if model == "balances":
                got = {k: hist[-1]["balance"] if hist else None}
                want = {k: mine[0]["balance"]}
            elif model == "carts":
                last = {}
                for h in hist:
                    if h["product_id"]:
                        last[h["product_id"]] = h["quantity"]
                got = {p: q for p, q in last.items() if int(q) > 0}
                want = {r["product_id"]: r["quantity"] for r in mine}
            else:
                got = {}
                for h in hist:
                    got[h["attribute"]] = h["value"]
                want = {r["attribute"]: r["value"] for r in mine}
            if got != want:
                print(f"  history {k} --model {model} ends on {got}, state says {want}")
                return False
    return True


def incremental(seed, d, plan=False):
    """After every run, the lake equals a copy rebuilt with --full (with
    `plan`, each run is first dry-run, and the two must agree)."""
    rng = random.Random(seed)
    files, days = generated(d, rng, seed, (500, 4000), (4, 60), [0, 0.3, 0.6, 0.9])
    def session_settings():
        """A session gap and excluded types, each sometimes the default."""
        gap = rng.choice([None, "10m", "45m"])
        excluded = rng.choice([None, None, "page_view", "deposit,withdrawal,correction"])
        return ((["--session-gap", gap] if gap else [])
                + (["--session-exclude-types", excluded] if excluded else []))
    sessions = session_settings()
    extra = list(sessions)
    grace = rng.random() < 0.3
    if grace:
        extra += ["--late-policy", "grace", "--allowed-lateness", rng.choice(["1h", "1d", "3d"])]
    lake, i, hour = os.path.join(d, "lake"), 0, 0
    # Half the lakes keep daily snapshots, some only the newest few.
    keep, toml = None, ""
    if rng.random() < 0.5:
        keep = rng.choice([None, 1, 2, 3])
        toml += (f"[state]\nsnapshot_models = {json.dumps(rng.sample(MODELS, 2))}\n"
                 + (f"snapshot_keep = {keep}\n" if keep else ""))
    # Some lakes delete old commits (a checkpoint comes every 5 commits in
    # this soak): silver then rebuilds whole the grown dates built before
    # the oldest commit kept.
    retention = rng.choice([None, None, "1h", "1d", "3d"])
    if retention:
        toml += f'[log]\nretention = "{retention}"\n'
    if plan and rng.random() < 0.4:
        toml += f"[ingest]\ncompact_min_files = {rng.choice([2, 3])}\n"
    if toml:
        os.makedirs(lake, exist_ok=True)
        with open(os.path.join(lake, "evlake.toml"), "w") as f:
            f.write(toml)
    # Some lakes have a typed table of their own (LAKE/typed/).
    own = rng.random() < 0.4
    if own:
        own_typed(lake, OWN_TYPED)
        own_daily(lake)
    print(f"  settings {extra}, {len(files)} files"
          + (f", snapshot_keep {keep}" if keep else "") + (", own typed table" if own else "")
          + (f", log retention {retention}" if retention else ""))
    def go(args):
        """A run (with `plan`, checked against its dry run first)."""
        if plan:
            return planned_run(lake, args) is not None
        ev(lake, *args)
        return True

    while i < len(files):
        # Between runs the typed file is sometimes added, edited or
        # removed: only that table is rebuilt (or dropped) alone.
        if own and i > 0 and rng.random() < 0.2:
            own_typed(lake, rng.choice([OWN_TYPED, OWN_TYPED_EDITED, None]))
        if i > 0 and rng.random() < 0.05:
            # The session settings change between runs: every date of
            # silver is rebuilt with them, then grows incrementally again.
            late = extra[len(sessions):]
            sessions = session_settings()
            extra = sessions + late
            print(f"  settings now {extra}")
        batch = files[i:i + rng.choice([1, 1, 2, 3])]
        i += len(batch)
        hour += rng.randint(1, 30)
        pt = f"2024-04-{1 + hour // 24:02d}T{hour % 24:02d}:00:00Z"
        run = ["run", *batch, "--processing-time", pt, "--json", "--max-bad-fraction", "1", *extra]
        if not go(run):
            return False
        if grace and rng.random() < 0.4:
            ev(lake, "reconcile", "--processing-time", pt)
            if not go(["run", "--processing-time", pt, *extra]):
                return False
        if rng.random() < 0.15:
            a = rng.randint(1, days)
            steps = [["silver", "--dates", f"2024-03-{a:02d}..2024-03-{a + 1:02d}", *sessions],
                     ["gold"]]
            for step in steps:
                if plan:
                    if not planned_step(lake, step):
                        return False
                else:
                    ev(lake, *step)
        if rng.random() < 0.25:
            # Compaction changes no row: the lake must still equal --full,
            # and the next late batch take silver's incremental path.
            ev(lake, "compact", "--min-files", str(rng.choice([2, 3])), "--processing-time", pt)
        if rng.random() < 0.12:
            # An input taken back: its rows leave bronze, and the dates it
            # was on are rebuilt (sessions it joined across midnight split).
            gone = rng.choice(files[:i])
            r = json.loads(ev(lake, "retract", gone, "--processing-time", pt, "--json").stdout)
            left = ev(lake, "query", "SELECT count(*) FROM bronze_events WHERE batch_id IN ("
                      + ",".join(f"'{b['batch_id']}'" for b in r["batches"]) + ")",
                      "--format", "csv").stdout.split()
            if left[1:] != ["0"]:
                print(f"  rows of retracted {gone} left in bronze: {left}")
                return False
            if not go(["run", "--processing-time", pt, *extra]):
                return False
            if rng.random() < 0.4:
                # Taken in again on purpose: its events judged late
                # against the watermark as it is now.
                ev(lake, "ingest", gone, "--reingest-retracted", "--processing-time", pt,
                   "--max-bad-fraction", "1", *extra[len(sessions):])
                if not go(["run", "--processing-time", pt, *extra]):
                    return False
        if rng.random() < 0.1:
            # A user erased: their rows leave bronze, the side output and
            # quarantine, snapshots after their earliest event go, and the
            # dates they were on are rebuilt.
            users = ev(lake, "query", "SELECT DISTINCT user_id FROM bronze_events ORDER BY 1",
                       "--format", "csv").stdout.split()[1:]
            if users:
                who = rng.sample(users, min(len(users), rng.choice([1, 1, 3])))
                ev(lake, "erase", *sum((["--user", u] for u in who), []), "--processing-time", pt)
                names = ",".join(f"'{u}'" for u in who)

                def left_in(tables, when):
                    for table in tables:
                        left = ev(lake, "query", f"SELECT count(*) FROM {table} WHERE user_id IN ({names})",
                                  "--format", "csv").stdout.split()
                        if left[1:] != ["0"]:
                            print(f"  rows of erased {who} left in {table} {when}: {left}")
                            return True
                    return False
                if left_in(("bronze_events", "bronze_late"), "after erase"):
                    return False
                if not go(["run", "--processing-time", pt, *extra]):
                    return False
                if left_in(("events", "sessions"), "after run"):
                    return False
        if rng.random() < 0.2:
            again = json.loads(ev(lake, *run).stdout)
            if again["status"] != "noop":
                print(f"  a re-run of {batch} was not a no-op: {again['status']}")
                return False
        full = lake + "-full"
        shutil.rmtree(full, ignore_errors=True)
        shutil.copytree(lake, full)
        ev(full, "silver", "--full", *sessions)
        ev(full, "gold", "--full")
        if differences(dump(lake), dump(full), f"incremental vs --full after {pt}"):
            return False
    if keep:
        status = json.loads(ev(lake, "status", "--json").stdout)
        for model in MODELS:
            n = sum(1 for s in status["snapshots"] if s["model"] == model)
            if n > keep:
                print(f"  {n} snapshots of {model} kept, snapshot_keep is {keep}")
                return False
    for model in MODELS:
        snap = f"2024-03-{rng.randint(1, days):02d}"
        ask = f"2024-03-{rng.randint(1, days + 1):02d}"
        ev(lake, "snapshot", model, "--as-of", snap)
        a = json.loads(ev(lake, "state", model, "--as-of", ask, "--json").stdout)
        b = json.loads(ev(lake, "state", model, "--as-of", ask, "--json", "--no-snapshot").stdout)
        if (a["rows"], a["problems"]) != (b["rows"], b["problems"]):
            print(f"  MISMATCH {model} as of {ask}: from the snapshot of {snap} vs a full replay")
            return False
    return history_agrees(lake, rng) and checked(lake)


def kill(seed, d, interrupt=False):
    """Runs killed with SIGKILL at random moments, then re-run, end equal to
    a lake that saw the same runs uninterrupted; the lake stays readable
    after every kill. With `interrupt`, SIGINT, SIGTERM or SIGHUP instead
    (now and then twice): a writer that took the signal exits 128 + its
    number and leaves no staged or uncommitted file (one signal), or dies
    by it before it took the lock."""
    rng = random.Random(seed)
    files, _ = generated(d, rng, seed, (20000, 80000), (20, 300), [0.5])
    clean, crashy, kills = os.path.join(d, "clean"), os.path.join(d, "crashy"), 0
    pair = Pair(rng, clean, crashy)
    for n, f in enumerate(files):
        for step in pair.steps(files, n):
            ev(clean, *step)
            for attempt in range(1, 100):
                p = subprocess.Popen([E, "--lake", crashy, *step], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
                try:
                    # A few random kills, then one run to the end (signals
                    # also later on: silver's, gold's and the snapshots' work).
                    p.wait(timeout=rng.uniform(0, 4 if interrupt else 0.6) if attempt <= 4 else None)
                except subprocess.TimeoutExpired:
                    if interrupt:
                        if not interrupted(p, rng, crashy):
                            return False
                    else:
                        p.send_signal(signal.SIGKILL)
                        p.wait()
                    kills += 1
                    if os.path.isdir(os.path.join(crashy, "_evlake", "log")) and \
                            ev(crashy, "query", "SELECT count(*) FROM bronze_events", check=False).returncode:
                        print("  the lake is unreadable after a kill")
                        return False
                    continue
                if p.returncode != 0:
                    print(f"  a re-run failed: exit {p.returncode}: {p.stderr.read().decode()[-500:]}")
                    return False
                break
        if not pair.agree(f"clean vs killed ({kills} kills) after file {n + 1}"):
            return False
    # Every kill's files are gone: the step run to the end after it
    # removed them.
    if not checked(crashy):
        return False
    print(f"  {len(files)} files, {kills} {'signals' if interrupt else 'kills'}, {pair}"
          + (f", ended: {dict(sorted(ENDINGS.items()))}" if interrupt else ""))
    ENDINGS.clear()
    return True


# How interrupted writers ended: exit code -> count (printed per seed, so a
# soak whose signals all came too early or too late shows it).
ENDINGS = {}


def interrupted(p, rng, lake):
    """Send running writer `p` a signal (SIGINT, SIGTERM or SIGHUP; now and
    then a second one soon after), and check how it stopped."""
    sig = rng.choice([signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
    twice = rng.random() < 0.15
    p.send_signal(sig)
    if twice:
        try:
            p.wait(timeout=rng.uniform(0, 0.2))
        except subprocess.TimeoutExpired:
            p.send_signal(sig)
    p.wait()
    err = p.stderr.read().decode()
    ending = "finished" if p.returncode == 0 else "default" if p.returncode < 0 else \
        "twice" if twice else "stopped"
    ENDINGS[ending] = ENDINGS.get(ending, 0) + 1
    # Finished first (0), stopped at a safe point (128 + sig), or killed by
    # the signal before it took the lock (-sig); with two signals, also
    # stopped at once (128 + sig).
    if p.returncode not in (0, 128 + sig, -sig):
        print(f"  {signal.Signals(sig).name}: exit {p.returncode}: {err[-800:]}")
        return False
    if p.returncode == 128 + sig and not twice:
        if f"interrupted by {signal.Signals(sig).name}" not in err \
                and "came after the last step committed" not in err:
            print(f"  {signal.Signals(sig).name}: exit {p.returncode} without saying so: {err[-800:]}")
            return False
        if not left_clean(lake, f"{signal.Signals(sig).name}"):
            return False
    return True


def left_clean(lake, what):
    """After a step that stopped (ran out of room, took a signal): nothing
    staged, and `check --deep` clean (no orphan)."""
    staging = os.path.join(lake, "_evlake", "staging")
    if os.path.isdir(staging) and os.listdir(staging):
        print(f"  {what}: staged files left: {os.listdir(staging)[:5]}")
        return False
    return not os.path.isdir(os.path.join(lake, "_evlake", "log")) or checked(lake)


def full_disk(seed, d):
    """Every step first run on a disk with little room left (a tmpfs capped
    a random few KiB to MiB above what the lake holds), then again with room:
    a step that ran out exits 1 with the disk-full hint, the lake stays
    readable with no staged or orphan file left, and the end equals a lake
    that never ran out. Needs root: it mounts a tmpfs."""
    if os.geteuid() != 0:
        raise RuntimeError("full-disk mounts a tmpfs: run it as root")
    rng = random.Random(seed)
    files, _ = generated(d, rng, seed, (5000, 40000), (20, 300), [0.5])
    mnt = os.path.join(d, "fs")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", mnt], check=True)
    try:
        clean, tight, fulls = os.path.join(d, "clean"), os.path.join(mnt, "lake"), 0
        pair = Pair(rng, clean, tight)
        for n, f in enumerate(files):
            for step in pair.steps(files, n):
                ev(clean, *step)
                for attempt in range(1, 100):
                    if attempt <= 6:
                        st = os.statvfs(mnt)
                        used = st.f_blocks - st.f_bfree
                        room = rng.choice([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
                        # (size=0 would be no limit at all.)
                        size = max(used + room, 1) * st.f_frsize
                        subprocess.run(["mount", "-o", f"remount,size={size}", mnt], check=True)
                    try:
                        p = ev(tight, *step, check=False)
                    finally:
                        subprocess.run(["mount", "-o", "remount,size=1g", mnt], check=True)
                    if p.returncode == 0:
                        break
                    if p.returncode != 1 or "hint: the disk is full" not in p.stderr or attempt > 6:
                        print(f"  {' '.join(step)}: exit {p.returncode} (attempt {attempt}): "
                              f"{p.stderr[-800:]}")
                        return False
                    fulls += 1
                    # Readable at once, and nothing of the failed attempt left.
                    if os.path.isdir(os.path.join(tight, "_evlake", "log")) and \
                            ev(tight, "query", "SELECT count(*) FROM bronze_events", check=False).returncode:
                        print(f"  the lake is unreadable after {' '.join(step)} ran out of room")
                        return False
                    if not left_clean(tight, f"{' '.join(step)} out of room"):
                        return False
            if not pair.agree(f"clean vs out of room ({fulls} times) after file {n + 1}"):
                return False
        if not checked(tight):
            return False
        print(f"  {len(files)} files, {fulls} runs out of room, {pair}")
        return True
    finally:
        subprocess.run(["umount", mnt], check=False)


class Pair:
    """Two lakes set up alike (and fed alike): the settings and the steps
    each input brings, drawn from the seed."""

    def __init__(self, rng, *lakes):
        self.rng, self.lakes, self.retracts, self.erases = rng, lakes, 0, 0
        # Half the pairs keep daily snapshots of balances, the newest 2.
        self.policy = rng.random() < 0.5
        # Some pairs compact at the end of every run (faults land in it too).
        self.compacts = rng.random() < 0.4
        # Some pairs delete commits older than a day (faults land in that too).
        self.retention = rng.random() < 0.3
        if self.policy or self.compacts or self.retention:
            for lake in lakes:
                os.makedirs(lake, exist_ok=True)
                with open(os.path.join(lake, "evlake.toml"), "w") as f:
                    if self.compacts:
                        f.write("[ingest]\ncompact_min_files = 2\n")
                    if self.policy:
                        f.write('[state]\nsnapshot_models = ["balances"]\nsnapshot_keep = 2\n')
                    if self.retention:
                        f.write('[log]\nretention = "1d"\n')
        # Some pairs have a typed table of their own.
        self.own = rng.random() < 0.4
        if self.own:
            for lake in lakes:
                own_typed(lake, OWN_TYPED)
                own_daily(lake)

    def steps(self, files, n):
        """The commands input `n` brings (a run, perhaps after a retract
        or an erase)."""
        rng = self.rng
        run = ["run", files[n], "--processing-time", f"2024-04-{n + 1:02d}T02:00:00Z"]
        # The typed file edited, added or removed in both lakes: the faults
        # then also land in the rebuild of that table alone.
        if self.own and n > 0 and rng.random() < 0.3:
            sql = rng.choice([OWN_TYPED, OWN_TYPED_EDITED, None])
            for lake in self.lakes:
                own_typed(lake, sql)
        steps = [run]
        if n > 0 and rng.random() < 0.15:
            # An earlier input retracted first (faults land in the rewrite
            # and in the rebuild after it).
            steps.insert(0, ["retract", rng.choice(files[:n]), "--processing-time",
                             f"2024-04-{n + 1:02d}T01:00:00Z"])
            self.retracts += 1
        if n > 0 and rng.random() < 0.1:
            # A user erased (faults land in the rewrite, the snapshots'
            # removal and the rebuild after it).
            steps.insert(0, ["erase", "--user", f"u{rng.randint(0, 40)}", "--processing-time",
                             f"2024-04-{n + 1:02d}T01:30:00Z"])
            self.erases += 1
        return steps

    def agree(self, what):
        """The lakes' tables and snapshots are alike."""
        a, b = self.lakes
        if differences(dump(a), dump(b), what):
            return False
        snapshots = lambda lake: [(s["model"], s["as_of"], s["rows"], s["valid"])
                                  for s in json.loads(ev(lake, "status", "--json").stdout)["snapshots"]]
        if snapshots(a) != snapshots(b):
            print(f"  snapshots differ ({what}): {snapshots(a)} vs {snapshots(b)}")
            return False
        return True

    def __str__(self):
        return (f"{self.retracts} retracts, {self.erases} erases"
                + (", daily snapshots, snapshot_keep 2" if self.policy else "")
                + (", log retention 1d" if self.retention else "")
                + (", compacting" if self.compacts else "")
                + (", own typed table" if self.own else ""))


def known_at(seed, d):
    """`state --known-at P` on the whole lake equals `state` (from a
    snapshot or replayed) on a lake that was fed only the runs up to P."""
    rng = random.Random(seed)
    files, days = generated(d, rng, seed, (500, 3000), (4, 40), [0.6])
    lake, pts = os.path.join(d, "lake"), []
    for n, f in enumerate(files):
        pts.append(f"2024-04-{n + 1:02d}T02:00:00Z")
        ev(lake, "run", f, "--processing-time", pts[-1])
        if rng.random() < 0.3:
            # (The prefix lakes never compact: the answers must not differ.)
            ev(lake, "compact", "--min-files", "2", "--processing-time", pts[-1])
        if rng.random() < 0.5:
            ev(lake, "snapshot", rng.choice(MODELS), "--as-of", f"2024-03-{rng.randint(1, days):02d}")
    answer = lambda lk, model, *a: (lambda j: (j["rows"], j["problems"]))(
        json.loads(ev(lk, "state", model, *a, "--json").stdout))
    for k in range(len(files)):
        prefix = os.path.join(d, f"upto-{k}")
        for n in range(k + 1):
            ev(prefix, "run", files[n], "--processing-time", pts[n])
        known = pts[k].replace("02:00", "03:00")
        for model in MODELS:
            t = f"2024-03-{rng.randint(1, days + 1):02d}"
            a = answer(lake, model, "--as-of", t, "--known-at", known)
            b = answer(prefix, model, "--as-of", t)
            c = answer(prefix, model, "--as-of", t, "--no-snapshot")
            if not a == b == c:
                print(f"  MISMATCH {model} as of {t} known at {known}")
                return False
        shutil.rmtree(prefix)
    return checked(lake)


# What any reader must see of any commit: no row twice (a half-replaced
# partition would show a rewritten date's rows twice, or none).
ONCE = [
    "SELECT count(*) - count(DISTINCT event_id) AS n FROM events",
    "SELECT count(*) - count(DISTINCT session_id) AS n FROM sessions",
    "SELECT count(*) - count(DISTINCT event_date) AS n FROM daily_metrics",
    "SELECT count(*) - count(DISTINCT (batch_id, source_line)) AS n FROM bronze_events",
    "SELECT count(*) - count(DISTINCT event_id) AS n FROM purchases",
]


def readers(seed, d):
    """Readers (`query`, `state`, `history`, `tables`, `status`, `check`) running
    beside a writer's runs, compactions, snapshots, retracts and erases
    never fail and never see a row twice; the lake then equals --full."""
    import threading
    import time
    rng = random.Random(seed)
    files, days = generated(d, rng, seed, (1000, 4000), (4, 40), [0.3, 0.6])
    lake = os.path.join(d, "lake")
    os.makedirs(lake)
    with open(os.path.join(lake, "evlake.toml"), "w") as f:
        f.write(f"[state]\nsnapshot_models = {json.dumps(rng.sample(MODELS, 2))}\nsnapshot_keep = 2\n"
                f'[log]\nretention = "{rng.choice(["1h", "1d"])}"\n')
    ev(lake, "run", files[0], "--processing-time", "2024-04-01T00:00:00Z")
    done, bad, reads, retried = threading.Event(), [], [0], [0]

    def reader(k):
        r = random.Random(seed * 100 + k)
        while not done.is_set() and not bad:
            what = r.choice(["once", "once", "state", "history", "tables", "status", "check"])
            if what == "once":
                sql = r.choice(ONCE)
                p = ev(lake, "query", sql, "--format", "csv", check=False)
                if p.returncode == 0 and p.stdout.split()[1:] != ["0"]:
                    bad.append(f"{sql} gave {p.stdout.split()[1:]}")
            elif what == "state":
                p = ev(lake, "state", r.choice(MODELS), "--as-of",
                       f"2024-03-{r.randint(1, days + 1):02d}", "--format", "csv", check=False)
            elif what == "history":
                p = ev(lake, "history", f"acct-{r.randint(0, 20)}", check=False)
            else:
                # (`check` beside a writer may list its files not yet
                # committed as orphans, but no committed file amiss.)
                p = ev(lake, what, *(["--json"] if what in ("status", "check") else []), check=False)
            if p.returncode != 0:
                bad.append(f"{what} exited {p.returncode}: {p.stderr[-2000:]}")
            reads[0] += 1
            retried[0] += "Retrying" in p.stderr

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        for n, f in enumerate(files[1:], 1):
            if bad:
                break
            pt = f"2024-04-{n + 1:02d}T00:00:00Z"
            ev(lake, "--lock-wait", "1m", "run", f, "--processing-time", pt)
            step = rng.random()
            if step < 0.3:
                ev(lake, "--lock-wait", "1m", "compact", "--min-files", "2", "--processing-time", pt)
            elif step < 0.4:
                ev(lake, "--lock-wait", "1m", "retract", rng.choice(files[:n]), "--processing-time", pt)
                ev(lake, "--lock-wait", "1m", "run", "--processing-time", pt)
            elif step < 0.5:
                ev(lake, "--lock-wait", "1m", "erase", "--user", f"u{rng.randint(1, 10)}",
                   "--processing-time", pt)
                ev(lake, "--lock-wait", "1m", "run", "--processing-time", pt)
            elif step < 0.7:
                ev(lake, "--lock-wait", "1m", "snapshot", rng.choice(MODELS), "--as-of",
                   f"2024-03-{rng.randint(1, days):02d}")
            elif step < 0.8:
                ev(lake, "--lock-wait", "1m", "silver", "--dates",
                   f"2024-03-01..2024-03-{days:02d}")
                ev(lake, "--lock-wait", "1m", "gold")
        time.sleep(0.5)
    finally:
        done.set()
        for t in threads:
            t.join()
    print(f"  {len(files)} files, {reads[0]} reads beside the writer, {retried[0]} read again"
          " after a commit replaced their files")
    if bad:
        for b in bad[:5]:
            print(f"  a reader {b}")
        return False
    full = lake + "-full"
    shutil.copytree(lake, full)
    ev(full, "silver", "--full")
    ev(full, "gold", "--full")
    return not differences(dump(lake), dump(full), "after the writer, vs --full") and checked(lake)


def grow(seed, d):
    """One log a writer appends to, ingested by runs that cut it at random
    bytes (mid-line, mid-character, at a line's end): every event lands
    in bronze once, under its line in the file, as when the whole file is
    ingested at once; the half lines are the only extra quarantine rows."""
    rng = random.Random(seed)
    files, _ = generated(d, rng, seed, (300, 3000), (4, 40), [0, 0.3])
    whole = b"".join(open(f, "rb").read() for f in files)
    log_path = os.path.join(d, "inbox", "events.jsonl")
    os.makedirs(os.path.dirname(log_path))
    cuts = rng.sample(range(1, len(whole)), rng.randint(1, 12))
    # Some cuts fall just before a newline: a whole line but for it.
    cuts = [whole.find(b"\n", c) if rng.random() < 0.3 and whole.find(b"\n", c) > 0 else c
            for c in cuts]
    cuts = sorted(set(cuts)) + [len(whole)]
    lake, ref = os.path.join(d, "lake"), os.path.join(d, "ref")
    inbox = os.path.dirname(log_path)
    # Half the seeds rotate the log once, between two runs: the old one,
    # renamed, is found by its content and read on from where it was.
    rotate = rng.randrange(1, len(cuts)) if rng.random() < 0.5 and len(cuts) > 2 else None
    # A log is found under its new name by its first 512 bytes: a shorter
    # one is read whole there (README), so it is not rotated here.
    if rotate and cuts[rotate - 1] < 512:
        rotate = None
    # Some seeds' log is gzip, a member appended per run (as a logger that
    # compresses each flush), cut at line ends: each run reads on from the
    # new member. (One cut mid-line is read whole: README.)
    gz = rng.random() < 0.3
    if gz:
        cuts = sorted({whole.find(b"\n", c) + 1 for c in cuts if whole.find(b"\n", c) >= 0}
                      | {len(whole)})
        rotate = None
        log_path += ".gz"
    # Rotated logs are compressed by some seeds, at once or at the next
    # rotation (logrotate's `compress`, `delaycompress`): found by their
    # text, they too are read on from where they were.
    squeeze = rng.choice(["no", "at once", "a run later"]) if rotate else "no"
    # The rotated log's name: logrotate's `extension .jsonl`, its default,
    # its `dateext`.
    old = os.path.join(inbox, rng.choice(["events-old.jsonl", "events.jsonl.1",
                                          "events.jsonl-20240401"]))
    print(f"  {len(cuts)} runs over {len(whole)} bytes"
          + (f", the log rotated before run {rotate}" if rotate else "")
          + (f" to {os.path.basename(old)}" if rotate else "")
          + (f", compressed {squeeze}" if squeeze != "no" else "")
          + (", gzip, a member per run" if gz else ""))
    start, runs, unfinished = 0, 0, 0
    for n, cut in enumerate(cuts):
        if n == rotate:
            # The writer finished a line in the old log (if the last run
            # caught one half-written), then the log was renamed.
            end = whole.find(b"\n", cuts[n - 1])
            end = cut if end < 0 or end + 1 > cut else end + 1
            with open(log_path, "wb") as f:
                f.write(whole[start:end])
            os.rename(log_path, old)
            start = end
        if (squeeze == "at once" and n == rotate) or (squeeze == "a run later" and n == rotate + 1):
            with open(old, "rb") as f, open(old + ".gz", "wb") as g:
                g.write(gzip.compress(f.read()))
            os.remove(old)
        if gz:
            with open(log_path, "ab") as f:
                f.write(gzip.compress(whole[cuts[n - 1] if n else 0:cut]))
        else:
            with open(log_path, "wb") as f:
                f.write(whole[start:cut])
        pt = f"2024-04-{1 + n // 24:02d}T{n % 24:02d}:00:00Z"
        r = json.loads(ev(lake, "run", inbox, "--processing-time", pt, "--json",
                          "--max-bad-fraction", "1").stdout)
        runs += 1
        unfinished += len(r["ingest"].get("unfinished_lines", []))
        grown = [i for i in r["ingest"]["inputs"] if i["status"] == "ingested"]
        if n > 0 and not any(i.get("resumed") for i in grown) \
                and whole[start:cuts[n - 1]].count(b"\n") > 0 and n != rotate:
            print(f"  run {n} (cut at {cut}) read the file whole")
            return False
        if rng.random() < 0.2:
            again = json.loads(ev(lake, "run", inbox, "--processing-time", pt, "--json").stdout)
            if again["status"] != "noop":
                print(f"  a re-run after the cut at {cut} was not a no-op")
                return False
    with open(os.path.join(d, "whole.jsonl"), "wb") as f:
        f.write(whole)
    ev(ref, "run", os.path.join(d, "whole.jsonl"), "--processing-time", "2024-04-01T00:00:00Z",
       "--max-bad-fraction", "1")
    # A rotated log numbers its lines from 1 again.
    cols = ("event_id, event_type, user_id, event_timestamp, client_session_id, page_url, "
            "source_system, properties, extra" + ("" if rotate else ", source_line"))

    def rows(l, sql):
        return sorted(ev(l, "query", sql, "--format", "csv").stdout.splitlines()[1:])
    a = rows(lake, f"SELECT {cols} FROM bronze_events UNION ALL SELECT {cols} FROM bronze_late")
    b = rows(ref, f"SELECT {cols} FROM bronze_events")
    if a != b:
        print(f"  MISMATCH bronze rows: {len(a)} after {runs} runs vs {len(b)} at once")
        for r in sorted(set(a) ^ set(b))[:4]:
            print("    ", r[:300])
        return False
    q = "SELECT reason, raw FROM quarantine" if rotate else "SELECT line, reason, raw FROM quarantine"
    extra = set(rows(lake, q)) - set(rows(ref, q))
    if set(rows(ref, q)) - set(rows(lake, q)) or len(extra) > len(cuts) - 1:
        print(f"  MISMATCH quarantine: {len(extra)} extra rows for {len(cuts) - 1} cuts")
        return False
    # Each half line was said to be unfinished (so not counted against
    # --max-bad-fraction); so is a line of bad JSON cut just before its
    # newline.
    if not len(extra) <= unfinished <= len(cuts) - 1:
        print(f"  MISMATCH unfinished_lines: {unfinished} for {len(extra)} half lines")
        return False
    return checked(lake)


def main():
    kinds = {"incremental": incremental, "kill": kill, "known-at": known_at, "grow": grow,
             "plan": lambda seed, d: incremental(seed, d, plan=True), "readers": readers,
             "full-disk": full_disk,
             "interrupt": lambda seed, d: kill(seed, d, interrupt=True)}
    if len(sys.argv) != 3 or sys.argv[1] not in kinds:
        sys.exit(__doc__)
    # A checkpoint every 5 commits, so the lakes with `[log] retention`
    # delete commits within a few runs (and every lake loads from
    # checkpoints often).
    os.environ.setdefault("EVLAKE_CHECKPOINT_EVERY", "5")
    a, _, b = sys.argv[2].partition("..")
    seeds = range(int(a), int(b)) if b else range(int(a))
    failed = []
    for seed in seeds:
        d = os.path.join(ROOT, sys.argv[1], f"seed-{seed}")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        print(f"{sys.argv[1]} seed {seed}", flush=True)
        try:
            good = kinds[sys.argv[1]](seed, d)
        except RuntimeError as e:
            print(f"  {e}")
            good = False
        if good:
            shutil.rmtree(d)
        else:
            failed.append(seed)
            print(f"  FAILED: kept {d}", flush=True)
    print(f"{sys.argv[1]}: {len(seeds) - len(failed)} of {len(seeds)} seeds passed"
          + (f"; failed: {failed}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
