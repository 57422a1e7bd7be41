#!/usr/bin/env python3
"""Writes evlake's sample_data/ arrival batches and expected.json.

The batches are hand-curated: every case in the input contract is written
on purpose below (search for "CASE"), and steady background traffic makes
each batch large enough that its bad lines stay under the default
--max-bad-fraction of 5%. tests/sample_expected.json is computed here, from
what was written, never by evlake. (It lives outside sample_data/ because
`evlake ingest sample_data/` reads every *.json file there.) Re-running this script rewrites identical files.
"""
import gzip
import json
import os
import random
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
UTC = timezone.utc
rng = random.Random(20240315)
ids = 0


def eid():
    global ids
    ids += 1
    return f"evt-{ids:05d}"


def z(t):
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ev(etype, t, user, ts=None, src="web", page="/", props=None, **extra):
    e = {
        "event_id": extra.pop("event_id", None) or eid(),
        "event_type": etype,
        "event_timestamp": ts if ts is not None else z(t),
        "user_id": user,
        "page_url": f"https://shop.example.com{page}",
        "source_system": src,
        "properties": props or {},
    }
    e.update(extra)
    return e


class Batch:
    def __init__(self, name, processing_time):
        self.name = name
        self.processing_time = processing_time
        self.lines = []  # (bytes, kind, date or reason)

    def event(self, e, t):
        line = json.dumps(e, separators=(",", ":")).encode()
        self.lines.append((line, "event", t.astimezone(UTC).date().isoformat(), e["event_id"]))
        return line

    def raw_event(self, line, t, event_id):
        self.lines.append((line, "event", t.astimezone(UTC).date().isoformat(), event_id))

    def bad(self, line, reason):
        self.lines.append((line if isinstance(line, bytes) else line.encode(), "bad", reason, None))

    def empty(self):
        self.lines.append((b"", "empty", None, None))


def after_midnight(batch, day, user):
    """CASE: web traffic from just after midnight, up to 01:30, arrives with
    the 02:00 batch. It moves the watermark (max event time - 1h) past
    midnight, closing the previous day: mobile events of that day arriving
    in the next batch are then late."""
    for m in (30, 45, 60, 75, 90):
        t = day + timedelta(days=1, minutes=m)
        batch.event(ev("page_view", t, user, page="/"), t)


def background(batch, day, users, n_sessions, src="web"):
    """Ordinary sessions on `day`: a few page views, searches, cart adds."""
    out = []
    for _ in range(n_sessions):
        u = rng.choice(users)
        t = day + timedelta(hours=rng.randint(6, 21), minutes=rng.randint(0, 59))
        for _ in range(rng.randint(2, 6)):
            kind = rng.choice(["page_view", "page_view", "page_view", "search", "add_to_cart"])
            props = {}
            if kind == "search":
                props = {"query_text": rng.choice(["shoes", "jacket", "lamp"]), "result_count": rng.randint(0, 80)}
            if kind == "add_to_cart":
                props = {"product_id": f"p{rng.randint(1, 40)}", "quantity": rng.randint(1, 3)}
            e = ev(kind, t, u, src=src, page=rng.choice(["/", "/search", "/product", "/cart"]), props=props)
            out.append(batch.event(e, t))
            t += timedelta(minutes=rng.randint(1, 12), seconds=rng.randint(0, 59))
    return out


D14 = datetime(2024, 3, 14, tzinfo=UTC)
D15 = datetime(2024, 3, 15, tzinfo=UTC)
D16 = datetime(2024, 3, 16, tzinfo=UTC)
D19 = datetime(2024, 3, 19, tzinfo=UTC)
web_users = [f"u{i}" for i in range(1, 16)]

# ---------------------------------------------------------------- batch 1
b1 = Batch("2024-03-15.jsonl", "2024-03-16T02:00:00Z")
# CASE: a session crossing midnight (u1: 23:50 on the 14th to 00:20 on the 15th).
for m in (0, 12, 25, 41, 58):  # gaps of 12..17 minutes, one session
    t = D14 + timedelta(hours=23, minutes=50) + timedelta(minutes=m)
    b1.event(ev("page_view", t, "u1", page="/product"), t)
# CASE: ledger events: deposits and a withdrawal; amounts as numbers and strings.
t = D15 + timedelta(hours=9, minutes=5)
dep1 = ev("deposit", t, "u2", props={"account_id": "acct-u2", "amount": 250.00, "currency": "EUR"})
b1.event(dep1, t)
t2 = D15 + timedelta(hours=9, minutes=30)
b1.event(ev("withdrawal", t2, "u2", props={"account_id": "acct-u2", "amount": "19.99", "currency": "EUR"}), t2)
t3 = D15 + timedelta(hours=10)
b1.event(ev("deposit", t3, "u3", props={"account_id": "acct-u3", "amount": 1000.10, "currency": "EUR"}), t3)
# CASE: a purchase whose amount must keep its token text (19.99 never a float).
t4 = D15 + timedelta(hours=14, minutes=30)
b1.event(ev("purchase", t4, "u4", page="/checkout",
            props={"order_id": "o9", "amount": 19.99, "currency": "EUR", "product_id": "p7"}), t4)
# CASE: signup, an address change, cart add and remove.
t5 = D15 + timedelta(hours=11)
b1.event(ev("signup", t5, "u5", props={"plan": "pro", "referrer": "friend"}), t5)
b1.event(ev("address_changed", t5 + timedelta(minutes=3), "u5",
            props={"street": "1 Main St", "city": "Portland"}), t5 + timedelta(minutes=3))
b1.event(ev("add_to_cart", t5 + timedelta(minutes=6), "u5", props={"product_id": "p3", "quantity": 2}), t5 + timedelta(minutes=6))
b1.event(ev("remove_from_cart", t5 + timedelta(minutes=8), "u5", props={"product_id": "p3", "quantity": 1}), t5 + timedelta(minutes=8))
# CASE: aliases (actor_id, timestamp_utc, payload) and unknown top-level fields.
t6 = D15 + timedelta(hours=12, minutes=1)
alias = {"event_id": eid(), "event_type": "page_view", "timestamp_utc": z(t6), "actor_id": "u6",
         "payload": {"referrer": "newsletter"}, "app_version": "5.4.1", "experiment": {"id": "exp-7", "arm": "b"}}
b1.event(alias, t6)
b1_background = background(b1, D15, web_users, 45)
after_midnight(b1, D15, "u12")
# CASE: some lines end in CRLF (Windows), and the file starts with a UTF-8 BOM.
b1_crlf = True

# ---------------------------------------------------------------- batch 2
b2 = Batch("2024-03-16.jsonl.gz", "2024-03-17T02:00:00Z")
# CASE: mobile events queued offline, arriving up to 24h late (events of the 15th).
for i, h in enumerate((8, 13, 19, 22)):
    t = D15 + timedelta(hours=h, minutes=10 + i)
    for k in range(3):
        tk = t + timedelta(minutes=4 * k)
        b2.event(ev("page_view", tk, "m1", src="ios", page="/app/home"), tk)
# CASE: a mobile session crossing midnight, arriving late in one piece.
for m in (0, 9, 20, 31):
    t = D15 + timedelta(hours=23, minutes=45) + timedelta(minutes=m)
    b2.event(ev("page_view", t, "m2", src="android", page="/app/feed"), t)
# CASE: exact re-sends of events already in batch 1 (same bytes).
resent = [l for l in b1.lines if l[1] == "event"][:3]
for line, _, date, event_id in resent:
    b2.raw_event(line, datetime.fromisoformat(date + "T12:00:00+00:00"), event_id)
# CASE: id conflicts (README "Id conflicts"): an id of batch 1's 15th
# reused on the 16th (silver keeps a copy on each date); below, u9's search
# sent twice with another result_count (silver keeps the first copy).
reused = json.loads(b1_background[0])["event_id"]
tr = D16 + timedelta(hours=14, minutes=7)
b2.event(ev("page_view", tr, "u9", page="/", event_id=reused), tr)
# CASE: timestamps with UTC offsets (normalised to UTC; one moves across midnight).
t = D16 + timedelta(hours=1, minutes=30)  # 02:30+01:00 ... and 01:30+02:00 is 23:30Z on the 15th
b2.event(ev("page_view", t, "u7", ts="2024-03-16T02:30:00.250+01:00"), t)
tl = D15 + timedelta(hours=23, minutes=30)
b2.event(ev("page_view", tl, "u8", ts="2024-03-16T01:30:00+02:00"), tl)
tm = D16 + timedelta(hours=15)
u9_search = ev("search", tm, "u9", ts="2024-03-16T10:00:00-05:00", props={"query_text": "rain jacket", "result_count": 12})
b2.event(u9_search, tm)
b2.event(dict(u9_search, properties=dict(u9_search["properties"], result_count=13)), tm)
# CASE: epoch milliseconds, and sub-microsecond digits (truncated to µs).
te = datetime.fromtimestamp(1710600000123 / 1000, tz=UTC)
b2.event(ev("page_view", te, "u10", ts=1710600000123), te)
tn = D16 + timedelta(hours=16, minutes=0, seconds=1, microseconds=123456)
b2.event(ev("page_view", tn, "u10", ts="2024-03-16T16:00:01.123456789Z"), tn)
# CASE: a compensating ledger correction for batch 1's deposit.
tc = D16 + timedelta(hours=9)
b2.event(ev("correction", tc, "u2", props={"account_id": "acct-u2", "corrects_event_id": dep1["event_id"], "amount_delta": -50.00}), tc)
b2.event(ev("withdrawal", tc + timedelta(minutes=20), "u3", props={"account_id": "acct-u3", "amount": 75.5, "currency": "EUR"}), tc + timedelta(minutes=20))
b2.event(ev("purchase", tc + timedelta(hours=2), "u11", page="/checkout",
            props={"order_id": "o10", "amount": "5.00", "currency": "USD", "product_id": "p1"}), tc + timedelta(hours=2))
background(b2, D16, web_users, 50)
after_midnight(b2, D16, "u13")
# CASE: malformed lines of each kind.
b2.bad('{"event_id":"bad-1","event_type":"page_view","event_timestamp":"2024-03-16T10:00:00Z","user_id":"u1"', "invalid_json")
b2.bad('this is not json', "invalid_json")
b2.bad('["an","array"]', "not_an_object")
b2.bad('{"event_id":"bad-2","event_type":"page_view","event_timestamp":"2024-03-16T10:00:00Z"}', "missing_field")
b2.bad('{"event_id":null,"event_type":"page_view","event_timestamp":"2024-03-16T10:00:00Z","user_id":"u1"}', "missing_field")
b2.bad('{"event_id":"bad-3","event_type":"page_view","event_timestamp":"2024-03-16T10:00:00Z","user_id":42}', "invalid_type")
b2.bad('{"event_id":"bad-4","event_type":"page_view","event_timestamp":"yesterday","user_id":"u1"}', "invalid_timestamp")
b2.bad('{"event_id":"bad-5","event_type":"page_view","event_timestamp":"2024-13-45T25:61:00Z","user_id":"u1"}', "invalid_timestamp")
b2.bad('{"event_id":"bad-6","event_type":"page_view","event_timestamp":"2024-03-16T10:00:00Z","user_id":"u1","actor_id":"u2"}', "conflicting_fields")
b2.bad(b'{"event_id":"bad-7","event_type":"page_view","event_timestamp":"2024-03-16T10:00:00Z","user_id":"u1","page_url":"caf\xe9"}', "invalid_utf8")
b2.empty()
b2.empty()

# ---------------------------------------------------------------- batch 3
b3 = Batch("2024-03-19.jsonl", "2024-03-20T02:00:00Z")
# CASE: mobile events arriving days late (from the 15th and 16th).
for h in (7, 16):
    t = D15 + timedelta(hours=h, minutes=33)
    b3.event(ev("page_view", t, "m3", src="android", page="/app/deals"), t)
t = D16 + timedelta(hours=20, minutes=5)
b3.event(ev("add_to_cart", t, "m3", src="android", props={"product_id": "p9", "quantity": 1}), t)
# CASE: a late event that bridges two of u4's sessions from the 15th into one
# (u4's purchase at 14:30 and a page view at 15:10 are 40 minutes apart;
# this event at 14:50 arrives four days later).
t = D15 + timedelta(hours=15, minutes=10)
b3.event(ev("page_view", t, "u4", page="/account"), t)
tb = D15 + timedelta(hours=14, minutes=50)
b3.event(ev("page_view", tb, "u4", src="ios", page="/app/orders"), tb)
background(b3, D19, web_users, 40)
after_midnight(b3, D19, "u14")
# CASE: a timestamp without offset, and one far in the future (a broken clock).
b3.bad('{"event_id":"bad-8","event_type":"page_view","event_timestamp":"2024-03-19T10:00:00","user_id":"u1"}', "timestamp_without_offset")
b3.bad('{"event_id":"bad-9","event_type":"page_view","event_timestamp":"2031-01-01T00:00:00Z","user_id":"u1"}', "future_timestamp")
# CASE: epoch seconds where the contract says milliseconds (1970-01-20).
b3.bad('{"event_id":"bad-10","event_type":"page_view","event_timestamp":1710842400,"user_id":"u1"}', "timestamp_too_old")

# CASE (state): u5 moved from Portland to Seattle on the 15th; the mobile
# app's address change arrives four days late.
ts5 = D15 + timedelta(hours=18)
b3.event(ev("address_changed", ts5, "u5", src="ios", page="/app/profile",
            props={"street": "400 Pine St", "city": "Seattle"}), ts5)

# ---------------------------------------------------------------- write
expected = {"batches": [], "partitions": defaultdict(lambda: {"events": 0, "distinct_event_ids": 0})}
ids_by_date = defaultdict(set)
versions = defaultdict(set)  # (date, event_id) -> its lines
arrivals = []  # (processing time, line bytes) of every valid event, in file order
for batch, crlf, bom in ((b1, True, True), (b2, False, False), (b3, False, False)):
    lines = list(batch.lines)
    rng.shuffle(lines)
    arrivals += [(batch.processing_time, l[0]) for l in lines if l[1] == "event"]
    body = b"\xef\xbb\xbf" if bom else b""
    for i, (line, _, _, _) in enumerate(lines):
        body += line + (b"\r\n" if crlf and i % 3 == 0 else b"\n")
    path = os.path.join(HERE, batch.name)
    if batch.name.endswith(".gz"):
        with open(path, "wb") as f:
            with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
                gz.write(body)
    else:
        with open(path, "wb") as f:
            f.write(body)
    per_date = Counter()
    reasons = Counter()
    resends = 0
    conflicts = Counter()
    other_dates = Counter()
    for line, kind, what, event_id in lines:
        if kind == "event":
            if event_id in ids_by_date[what]:
                resends += 1
                # Another version of the event (the lines here differ only
                # where the content does): silver keeps the first.
                if line not in versions[(what, event_id)]:
                    conflicts[what] += 1
            elif any(event_id in ids for d, ids in ids_by_date.items() if d != what):
                other_dates[what] += 1
            versions[(what, event_id)].add(line)
            per_date[what] += 1
            expected["partitions"][what]["events"] += 1
            ids_by_date[what].add(event_id)
        elif kind == "bad":
            reasons[what] += 1
    expected["batches"].append({
        "file": batch.name,
        "processing_time": batch.processing_time,
        "lines": len(lines),
        "events": sum(per_date.values()),
        "empty_lines": sum(1 for l in lines if l[1] == "empty"),
        "quarantined": dict(sorted(reasons.items())),
        "resends": resends,
        "id_conflicts": dict(sorted(conflicts.items())),
        "ids_on_other_dates": dict(sorted(other_dates.items())),
        "partitions": dict(sorted(per_date.items())),
    })
for date, s in ids_by_date.items():
    expected["partitions"][date]["distinct_event_ids"] = len(s)


# ------------------------------------------- expected daily_metrics (gold)
# An independent model of the pipeline's rules (README: late data, silver,
# gold), from the lines as written: default settings (late policy reopen,
# watermark delay 1h, session gap 30m, reporting currency USD).
def instant_us(e):
    ts = e.get("event_timestamp", e.get("timestamp_utc", e.get("timestamp")))
    if isinstance(ts, int):
        return ts * 1000
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", ts)
    base = datetime.fromisoformat(m[1] + ("+00:00" if m[3] == "Z" else m[3]))
    return int(base.timestamp()) * 10**6 + int((m[2] or ".")[1:7].ljust(6, "0"))


DAY_US = 86_400 * 10**6
HOUR_US = 3600 * 10**6
kept = {}  # (date, event_id) -> event (first copy by processing time, then line)
max_event, watermark = None, None
for pt in sorted({pt for pt, _ in arrivals}):
    batch_events = []
    for p, line in arrivals:
        if p != pt:
            continue
        e = json.loads(line)
        us = instant_us(e)
        day = us // DAY_US
        late = watermark is not None and watermark >= (day + 1) * DAY_US
        pt_us = int(datetime.fromisoformat(pt.replace("Z", "+00:00")).timestamp()) * 10**6
        e["user_id"] = e.get("user_id", e.get("actor_id"))
        e["properties"] = e.get("properties", e.get("payload", {}))
        batch_events.append(dict(e, us=us, day=day, late=late, pt=pt_us))
    for e in batch_events:
        kept.setdefault((e["day"], e["event_id"]), e)
        max_event = e["us"] if max_event is None else max(max_event, e["us"])
    w = max_event - HOUR_US
    watermark = w if watermark is None else max(watermark, w)
by_user = defaultdict(list)
for e in kept.values():
    by_user[e["user_id"]].append(e)
sessions = []  # (start day, duration µs, events, converted)
for evs in by_user.values():
    evs.sort(key=lambda e: (e["us"], e["event_id"]))
    cur = None
    for e in evs:
        if cur is None or e["us"] - cur[-1]["us"] > 30 * 60 * 10**6:
            cur = [e]
            sessions.append(cur)
        else:
            cur.append(e)


def half_up(num, den, places):
    """num/den rounded half-up to `places` decimals, as text."""
    scaled = (2 * num * 10**places + den) // (2 * den)
    return f"{scaled // 10**places}.{scaled % 10**places:0{places}d}"


def p99_s(lateness_us):
    """The 99th percentile by linear interpolation at rank 0.99 * (n - 1)
    (PostgreSQL's percentile_cont), exactly, in seconds rounded half away
    from zero to the millisecond, as text."""
    v = sorted(lateness_us)
    rank = 99 * (len(v) - 1)  # in hundredths
    lo, fr = rank // 100, rank % 100
    cus = v[lo] * 100 + ((v[lo + 1] - v[lo]) * fr if fr else 0)  # 1/100 µs
    text = half_up(abs(cus), 10**8, 3)
    return "-" + text if cus < 0 and text != "0.000" else text


metrics = {}
for day in sorted({d for d, _ in kept}):
    evs = [e for (d, _), e in kept.items() if d == day]
    ses = [s for s in sessions if s[0]["day"] == day]
    dur = sum(s[-1]["us"] - s[0]["us"] for s in ses)
    conv = sum(1 for s in ses if any(e["event_type"] == "purchase" for e in s))
    purchases = [e for e in evs if e["event_type"] == "purchase"]
    revenue = sum(Decimal(str(e["properties"]["amount"])) for e in purchases
                  if e["properties"].get("currency") == "USD")
    date = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day)).date().isoformat()
    metrics[date] = {
        "events": len(evs),
        "users": len({e["user_id"] for e in evs}),
        "sessions": len(ses),
        "bounce_sessions": sum(1 for s in ses if len(s) == 1),
        "avg_session_duration_s": half_up(dur, len(ses) * 10**6, 3) if ses else None,
        "converted_sessions": conv,
        "conversion_rate": half_up(conv, len(ses), 4) if ses else None,
        "purchases": len(purchases),
        "revenue": f"{revenue:.2f}",
        "signups": sum(1 for e in evs if e["event_type"] == "signup"),
        "late_events": sum(1 for e in evs if e["late"]),
        "lateness_p99_s": p99_s([e["pt"] - e["us"] for e in evs]),
    }
expected["daily_metrics"] = metrics
expected["partitions"] = dict(sorted(expected["partitions"].items()))
with open(os.path.join(HERE, "..", "tests", "sample_expected.json"), "w") as f:
    json.dump(expected, f, indent=2)
    f.write("\n")
print(json.dumps({b["file"]: (b["lines"], b["events"], b["quarantined"]) for b in expected["batches"]}, indent=1))
