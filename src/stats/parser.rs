//! Mail log lines (Postfix, Amavis, Dovecot) → per-minute counters per hosted name and global.
//! One pass over bytes, no regex: each line is cut with memchr, and only final dispositions
//! count (the content-filter hop to Amavis and back is followed, never counted).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use memchr::memchr;
use memchr::memmem;
use serde::{Deserialize, Serialize};

/// The counters, in modoboa-stats' data-source order (greylist last, optional there).
pub const COUNTERS: [&str; 9] = [
    "sent",
    "recv",
    "bounced",
    "reject",
    "spam",
    "virus",
    "size_sent",
    "size_recv",
    "greylist",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Sent = 0,
    Recv,
    Bounced,
    Reject,
    Spam,
    Virus,
    SizeSent,
    SizeRecv,
    Greylist,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters(pub [u64; 9]);

impl Counters {
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|v| *v == 0)
    }
}

/// Index of the `global` pseudo-name in the buckets.
pub const GLOBAL: u32 = u32::MAX;

/// The hosted names (domains, relay domains, domain aliases): the only ones counted.
#[derive(Debug, Clone, Default)]
pub struct Domains {
    names: Vec<String>,
    index: HashMap<Vec<u8>, u32>,
}

impl Domains {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> Self {
        let mut d = Domains::default();
        for n in names {
            let n = n.as_ref().trim().to_ascii_lowercase();
            if n.is_empty() || d.index.contains_key(n.as_bytes()) {
                continue;
            }
            d.index.insert(n.as_bytes().to_vec(), d.names.len() as u32);
            d.names.push(n);
        }
        d
    }
    /// The index of a hosted domain (case-insensitive); without allocating for short names.
    pub fn lookup(&self, domain: &[u8]) -> Option<u32> {
        if domain.is_empty() {
            return None;
        }
        let mut buf = [0u8; 256];
        if domain.len() > buf.len() {
            return None;
        }
        let b = &mut buf[..domain.len()];
        b.copy_from_slice(domain);
        b.make_ascii_lowercase();
        self.index.get(&b[..]).copied()
    }
    pub fn name(&self, i: u32) -> &str {
        if i == GLOBAL {
            "global"
        } else {
            self.names.get(i as usize).map_or("", String::as_str)
        }
    }
    pub fn names(&self) -> &[String] {
        &self.names
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// How classic syslog timestamps (local time, no year) are turned into UTC.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    Local,
    /// Minutes east of UTC.
    Fixed(i32),
}

/// A Postfix queue id packed in a u128 (ids are at most 16 alphanumerics here), so the in-flight
/// map hashes one integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Qid(u128);

impl Qid {
    fn parse(b: &[u8]) -> Option<Qid> {
        if !(5..=16).contains(&b.len()) || !b.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut v = 0u128;
        for &c in b {
            v = (v << 8) | c as u128;
        }
        Some(Qid(v))
    }
    fn text(self) -> String {
        let bytes = self.0.to_be_bytes();
        bytes
            .iter()
            .skip_while(|b| **b == 0)
            .map(|b| *b as char)
            .collect()
    }
}

/// A multiplicative hasher: the keys are already well-mixed integers.
#[derive(Debug, Default)]
struct QidHasher(u64);

impl Hasher for QidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ *b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        self.0 = (x ^ (x >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 ^= self.0 >> 29;
    }
}

type QidMap<V> = HashMap<Qid, V, BuildHasherDefault<QidHasher>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Sender {
    Unknown,
    Foreign,
    Hosted(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Status {
    Sent,
    Bounced,
}

/// A final delivery waiting for the content-filter hop that names its original recipient.
#[derive(Debug, Clone)]
struct Held {
    minute: i64,
    to: Box<[u8]>,
    status: Status,
}

#[derive(Debug, Clone)]
struct Msg {
    /// Last minute a line of this message was seen (expiry).
    touched: i64,
    sender: Sender,
    size: u64,
    /// Received from a loopback client: maybe the content filter's re-injection.
    loopback: bool,
    /// A content-filter hop named this message as its re-injected copy.
    linked: bool,
    removed: bool,
    /// Final recipient → the hosted name of its original recipient, from the hop lines.
    origs: Vec<(Box<[u8]>, Option<u32>)>,
    held: Vec<Held>,
}

impl Msg {
    fn new(minute: i64) -> Self {
        Msg {
            touched: minute,
            sender: Sender::Unknown,
            size: 0,
            loopback: false,
            linked: false,
            removed: false,
            origs: Vec::new(),
            held: Vec::new(),
        }
    }
}

/// Parser counters about the input itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputStats {
    pub lines: u64,
    pub bytes: u64,
    /// Lines without a recognisable timestamp and program (garbage, truncated lines).
    pub skipped: u64,
    /// Lines another source already gave (a switch between the journal and a log file).
    pub already_read: u64,
}

/// Where reading stopped, in time: the second of the last line read and how many lines of that
/// second were read. A source read for the first time after another one (rsyslog installed, the
/// log file gone, the direct manager's log after the journal) resumes after this point, so no
/// line is counted twice and none is lost between the two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Seconds since the epoch (UTC).
    pub second: i64,
    pub lines_at_second: u64,
}

/// Whether what is read is recognised: counted events and messages Postfix queued, in time
/// (seconds), carried from run to run for the statistics check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// The last line that counted something.
    pub last_event: Option<i64>,
    /// Messages Postfix queued (cleanup's `message-id=` lines) since the last counted event,
    /// and the time of the first of them.
    pub queued_since_event: u64,
    pub first_queued_since_event: Option<i64>,
}

/// In-flight messages are forgotten this long after their last line (qmgr logs `from=` again
/// each time a deferred message is retried, so nothing needed is lost).
const EXPIRE_MINUTES: i64 = 120;
/// Held deliveries wait at most this long for their hop line.
const HOLD_MINUTES: i64 = 2;
/// Hard cap on in-flight messages: memory stays bounded whatever the log.
const MAX_INFLIGHT: usize = 1_000_000;

#[derive(Debug)]
pub struct Parser {
    domains: Domains,
    zone: Zone,
    /// (year, month, day) of "now", to guess the year of classic timestamps.
    today: (i32, u32, u32),
    msgs: QidMap<Msg>,
    buckets: HashMap<(i64, u32), Counters>,
    /// Minutes below this one were already handed out; late events go here.
    floor: i64,
    /// Latest minute seen in the log.
    latest: i64,
    last_sweep: i64,
    ts_key: [u8; 24],
    ts_len: usize,
    ts_minute: i64,
    pub input: InputStats,
    /// The second of the line being parsed, and where reading stands.
    second: i64,
    position: Position,
    /// Lines up to this point were read from another source: skipped.
    resume: Option<Position>,
    activity: Activity,
}

impl Parser {
    pub fn new(domains: Domains, zone: Zone, now: chrono::DateTime<chrono::Utc>) -> Self {
        use chrono::Datelike;
        Parser {
            domains,
            zone,
            today: (now.year(), now.month(), now.day()),
            msgs: QidMap::default(),
            buckets: HashMap::new(),
            floor: i64::MIN,
            latest: i64::MIN,
            last_sweep: i64::MIN,
            ts_key: [0; 24],
            ts_len: 0,
            ts_minute: 0,
            input: InputStats::default(),
            second: 0,
            position: Position::default(),
            resume: None,
            activity: Activity::default(),
        }
    }

    /// Skip the lines up to `p` (read from another source already).
    pub fn resume_after(&mut self, p: Position) {
        self.resume = Some(p);
    }

    /// The second of the last line read and how many lines of that second were read.
    pub fn position(&self) -> Option<Position> {
        (self.position.second != 0).then_some(self.position)
    }

    pub fn set_activity(&mut self, a: Activity) {
        self.activity = a;
    }

    pub fn activity(&self) -> Activity {
        self.activity
    }

    pub fn domains(&self) -> &Domains {
        &self.domains
    }

    /// The latest minute (UTC, minutes since the epoch) seen in the log.
    pub fn latest_minute(&self) -> Option<i64> {
        (self.latest != i64::MIN).then_some(self.latest)
    }

    pub fn in_flight(&self) -> usize {
        self.msgs.len()
    }

    /// Feeds a buffer of whole lines (a trailing partial line is parsed as a line too).
    pub fn feed(&mut self, data: &[u8]) {
        let mut start = 0;
        while start < data.len() {
            let end = memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            self.line(&data[start..end]);
            start = end + 1;
        }
    }

    /// One log line, without its newline.
    pub fn line(&mut self, line: &[u8]) {
        self.input.lines += 1;
        self.input.bytes += line.len() as u64 + 1;
        if self.parse(line).is_none() {
            self.input.skipped += 1;
        }
    }

    fn parse(&mut self, line: &[u8]) -> Option<()> {
        let (minute, rest) = self.timestamp(line)?;
        let second = self.second;
        if let Some(r) = &mut self.resume {
            if second < r.second || (second == r.second && r.lines_at_second > 0) {
                if second == r.second {
                    r.lines_at_second -= 1;
                }
                self.input.already_read += 1;
                return Some(());
            }
            self.resume = None;
        }
        if second == self.position.second {
            self.position.lines_at_second += 1;
        } else {
            self.position = Position {
                second,
                lines_at_second: 1,
            };
        }
        if minute > self.latest {
            self.latest = minute;
            if minute >= self.last_sweep.saturating_add(1) {
                self.sweep(false);
            }
        }
        // host, then `prog[pid]: message`
        let sp = memchr(b' ', rest)?;
        let rest = &rest[sp + 1..];
        let colon = memchr(b':', rest)?;
        let prog = &rest[..colon];
        let msg = rest.get(colon + 2..)?;
        if prog.starts_with(b"postfix") {
            self.postfix(minute, msg);
        } else if memmem::find(prog, b"amavis").is_some() {
            self.amavis(minute, msg);
        }
        // Dovecot and every other program: recognised, nothing to count (Postfix's own
        // LMTP line is the delivery; counting Dovecot's "saved mail" too would double it).
        Some(())
    }

    /// Minute since the epoch (UTC) and the rest of the line after the timestamp; the second
    /// (since the epoch) is left in `self.second`.
    fn timestamp<'a>(&mut self, line: &'a [u8]) -> Option<(i64, &'a [u8])> {
        let (minute, rest) = self.minute_of(line)?;
        // The seconds' digits: "2026-12-01T16:38:03..." or "Dec  1 16:38:03...".
        let at = if line[0].is_ascii_digit() { 17 } else { 13 };
        let sec = num(&line[at..at + 2]).filter(|s| *s < 61)?;
        self.second = minute * 60 + sec;
        Some((minute, rest))
    }

    fn minute_of<'a>(&mut self, line: &'a [u8]) -> Option<(i64, &'a [u8])> {
        let first = *line.first()?;
        if first.is_ascii_digit() {
            // RFC 3339 (rsyslog) or journalctl short-iso: 2026-12-01T16:38:03[.ffffff](Z|±hh[:]mm)
            if line.len() < 20 || line[4] != b'-' || line[10] != b'T' || line[13] != b':' {
                return None;
            }
            let mut i = 19;
            if line.get(i) == Some(&b'.') {
                i += 1;
                while line.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            let tz_start = i;
            let offset = match *line.get(i)? {
                b'Z' => {
                    i += 1;
                    0
                }
                s @ (b'+' | b'-') => {
                    let h = num(line.get(i + 1..i + 3)?)?;
                    let mut j = i + 3;
                    if line.get(j) == Some(&b':') {
                        j += 1;
                    }
                    let m = num(line.get(j..j + 2)?)?;
                    i = j + 2;
                    let o = (h * 60 + m) as i32;
                    if s == b'-' {
                        -o
                    } else {
                        o
                    }
                }
                _ => return None,
            };
            let rest = line.get(i + 1..)?;
            if line.get(i) != Some(&b' ') {
                return None;
            }
            // Cache on "YYYY-MM-DDTHH:MM" + the offset text.
            let key_len = 16 + (i - tz_start);
            if key_len <= 24
                && self.ts_len == key_len
                && self.ts_key[..16] == line[..16]
                && self.ts_key[16..key_len] == line[tz_start..i]
            {
                return Some((self.ts_minute, rest));
            }
            let y = num(&line[0..4])? as i32;
            let mo = num(&line[5..7])? as u32;
            let d = num(&line[8..10])? as u32;
            let h = num(&line[11..13])?;
            let mi = num(&line[14..16])?;
            if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 {
                return None;
            }
            let minute = days_from_civil(y, mo, d) * 1440 + h * 60 + mi - offset as i64;
            if key_len <= 24 {
                self.ts_key[..16].copy_from_slice(&line[..16]);
                self.ts_key[16..key_len].copy_from_slice(&line[tz_start..i]);
                self.ts_len = key_len;
                self.ts_minute = minute;
            }
            Some((minute, rest))
        } else {
            // Classic syslog: "Dec  1 16:38:03[.ffffff] host ..."
            if line.len() < 16 || line[3] != b' ' || line[9] != b':' || line[12] != b':' {
                return None;
            }
            let mut i = 15;
            if line.get(i) == Some(&b'.') {
                i += 1;
                while line.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            if line.get(i) != Some(&b' ') {
                return None;
            }
            let rest = &line[i + 1..];
            if self.ts_len == 12 && self.ts_key[..12] == line[..12] {
                return Some((self.ts_minute, rest));
            }
            let mo = month(&line[0..3])?;
            let d = if line[4] == b' ' {
                num(&line[5..6])?
            } else {
                num(&line[4..6])?
            } as u32;
            let h = num(&line[7..9])?;
            let mi = num(&line[10..12])?;
            if !(1..=31).contains(&d) || h > 23 || mi > 59 {
                return None;
            }
            // No year in the line: this year, or last year for a date after tomorrow.
            let (ty, tm, td) = self.today;
            let y = if (mo, d) > (tm, td + 1) { ty - 1 } else { ty };
            let local = days_from_civil(y, mo, d) * 1440 + h * 60 + mi;
            let offset = match self.zone {
                Zone::Fixed(o) => o as i64,
                Zone::Local => local_offset_minutes(local),
            };
            let minute = local - offset;
            self.ts_key[..12].copy_from_slice(&line[..12]);
            self.ts_len = 12;
            self.ts_minute = minute;
            Some((minute, rest))
        }
    }

    fn postfix(&mut self, minute: i64, msg: &[u8]) {
        let colon = match memchr(b':', msg) {
            Some(c) => c,
            None => return,
        };
        let id = &msg[..colon];
        let body = match msg.get(colon + 2..) {
            Some(b) if msg.get(colon + 1) == Some(&b' ') => b,
            _ => return,
        };
        if id == b"NOQUEUE" {
            if let Some(r) = reject_text(body) {
                self.reject(minute, r);
            }
            return;
        }
        let qid = match Qid::parse(id) {
            Some(q) => q,
            None => return,
        };
        match body.first() {
            Some(b't') if body.starts_with(b"to=<") => self.delivery(minute, qid, body),
            Some(b'f') if body.starts_with(b"from=<") => self.qmgr(minute, qid, body),
            Some(b'r') if body.starts_with(b"removed") => self.removed(qid),
            Some(b'c') if body.starts_with(b"client=") => {
                let lo = bracket(body).is_some_and(is_loopback);
                let m = self.msg(qid, minute);
                m.loopback = lo;
            }
            Some(b'm') if body.starts_with(b"message-id=") => {
                let a = &mut self.activity;
                a.queued_since_event += 1;
                a.first_queued_since_event.get_or_insert(self.second);
            }
            Some(b'r' | b'm') => {
                if let Some(r) = reject_text(body) {
                    self.reject(minute, r);
                }
            }
            _ => {}
        }
    }

    fn msg(&mut self, qid: Qid, minute: i64) -> &mut Msg {
        self.make_room(qid);
        entry(&mut self.msgs, qid, minute)
    }

    fn make_room(&mut self, qid: Qid) {
        if self.msgs.len() >= MAX_INFLIGHT && !self.msgs.contains_key(&qid) {
            self.sweep(true);
        }
    }

    /// qmgr: `from=<S>, size=N, nrcpt=N (queue active)` or `from=<S>, status=expired, ...`.
    fn qmgr(&mut self, minute: i64, qid: Qid, body: &[u8]) {
        let (sender, rest) = match angle(&body[5..]) {
            Some(x) => x,
            None => return,
        };
        let sender = self.sender_of(sender);
        if rest.starts_with(b", status=expired") {
            // Returned to sender after the queue lifetime: a bounce of every pending recipient.
            if let Sender::Hosted(s) = sender {
                self.add(minute, s, Counter::Bounced, 1);
            }
            self.add(minute, GLOBAL, Counter::Bounced, 1);
            return;
        }
        let size = rest
            .strip_prefix(b", size=")
            .map(|r| {
                r.iter()
                    .take_while(|c| c.is_ascii_digit())
                    .fold(0u64, |a, c| a.saturating_mul(10) + (c - b'0') as u64)
            })
            .unwrap_or(0);
        let m = self.msg(qid, minute);
        m.sender = sender;
        m.size = size;
    }

    fn sender_of(&self, addr: &[u8]) -> Sender {
        if addr.is_empty() {
            return Sender::Foreign; // the null sender: bounces and notifications
        }
        match self.domains.lookup(sender_domain(addr)) {
            Some(i) => Sender::Hosted(i),
            None => Sender::Foreign,
        }
    }

    fn removed(&mut self, qid: Qid) {
        if let Some(m) = self.msgs.get_mut(&qid) {
            if m.held.is_empty() {
                self.msgs.remove(&qid);
            } else {
                m.removed = true;
            }
        }
    }

    /// `to=<R>[, orig_to=<O>], relay=H[ip]:port, ..., status=S (reply)`.
    fn delivery(&mut self, minute: i64, qid: Qid, body: &[u8]) {
        let (to, mut rest) = match angle(&body[3..]) {
            Some(x) => x,
            None => return,
        };
        let mut orig: Option<&[u8]> = None;
        if let Some(r) = rest.strip_prefix(b", orig_to=") {
            if let Some((o, r2)) = angle(r) {
                orig = Some(o);
                rest = r2;
            }
        }
        let relay = rest
            .strip_prefix(b", relay=")
            .map(|r| &r[..memchr(b',', r).unwrap_or(r.len())])
            .unwrap_or(b"");
        let st = match memmem::find(rest, b", status=") {
            Some(i) => &rest[i + 9..],
            None => return,
        };
        let status = if st.starts_with(b"sent") {
            Status::Sent
        } else if st.starts_with(b"bounced") || st.starts_with(b"expired") {
            Status::Bounced
        } else {
            return; // deferred (retried later), deliverable/undeliverable (address probes)
        };
        let loopback_relay = bracket(relay).is_some_and(is_loopback);
        if status == Status::Sent {
            if let Some(i) = memmem::find(st, b"queued as ") {
                let id = &st[i + 10..];
                let end = id
                    .iter()
                    .position(|c| !c.is_ascii_alphanumeric())
                    .unwrap_or(id.len());
                if let Some(child) = Qid::parse(&id[..end]) {
                    if loopback_relay || self.msgs.contains_key(&child) {
                        self.hop(minute, child, to, orig);
                        return;
                    }
                }
            }
            if loopback_relay
                && (memmem::find(st, b"discarded").is_some()
                    || memmem::find(st, b"DISCARD").is_some()
                    || memmem::find(st, b", BOUNCE").is_some())
            {
                return; // the content filter kept it: counted as spam/virus from its own line
            }
        }
        self.make_room(qid);
        let m = entry(&mut self.msgs, qid, minute);
        let (sender, size) = (m.sender, m.size);
        let rcpt = match orig.filter(|o| memchr(b'@', o).is_some()) {
            Some(o) => self.domains.lookup(domain(o)),
            None => {
                if let Some(found) = m.origs.iter().find(|(t, _)| t.eq_ignore_ascii_case(to)) {
                    found.1
                } else if m.loopback && !m.linked {
                    // Perhaps re-injected by the content filter whose hop line (with the
                    // original recipient) is not logged yet: wait for it.
                    m.held.push(Held {
                        minute,
                        to: to.into(),
                        status,
                    });
                    return;
                } else {
                    self.domains.lookup(domain(to))
                }
            }
        };
        self.count(minute, sender, size, rcpt, status);
    }

    /// A hop to the content filter: the message lives on as `child`.
    fn hop(&mut self, minute: i64, child: Qid, to: &[u8], orig: Option<&[u8]>) {
        let orig_dom = orig
            .filter(|o| memchr(b'@', o).is_some())
            .map(|o| self.domains.lookup(domain(o)));
        self.make_room(child);
        let m = entry(&mut self.msgs, child, minute);
        m.linked = true;
        if let Some(od) = orig_dom {
            m.origs.push((to.into(), od));
        }
        if m.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut m.held);
        let (sender, size, removed) = (m.sender, m.size, m.removed);
        let resolved: Vec<(Held, Option<u32>)> = held
            .into_iter()
            .map(|h| {
                let d = m
                    .origs
                    .iter()
                    .find(|(t, _)| t.eq_ignore_ascii_case(&h.to))
                    .map(|x| x.1)
                    .unwrap_or_else(|| self.domains.lookup(domain(&h.to)));
                (h, d)
            })
            .collect();
        for (h, d) in resolved {
            self.count(h.minute, sender, size, d, h.status);
        }
        if removed {
            self.msgs.remove(&child);
        }
    }

    fn count(&mut self, minute: i64, sender: Sender, size: u64, rcpt: Option<u32>, st: Status) {
        let sender = match sender {
            Sender::Hosted(s) => Some(s),
            _ => None,
        };
        match st {
            Status::Sent => {
                if let Some(s) = sender {
                    self.add(minute, s, Counter::Sent, 1);
                    self.add(minute, s, Counter::SizeSent, size);
                    self.add(minute, GLOBAL, Counter::Sent, 1);
                    self.add(minute, GLOBAL, Counter::SizeSent, size);
                }
                if let Some(r) = rcpt {
                    self.add(minute, r, Counter::Recv, 1);
                    self.add(minute, r, Counter::SizeRecv, size);
                }
                // `global` is the whole server, as Modoboa's parser counts it: every delivery,
                // to a hosted domain or out (the content filter's hop is not one).
                self.add(minute, GLOBAL, Counter::Recv, 1);
                self.add(minute, GLOBAL, Counter::SizeRecv, size);
            }
            Status::Bounced => {
                if let Some(r) = rcpt {
                    self.add(minute, r, Counter::Bounced, 1);
                }
                if let Some(s) = sender.filter(|s| Some(*s) != rcpt) {
                    self.add(minute, s, Counter::Bounced, 1);
                }
                self.add(minute, GLOBAL, Counter::Bounced, 1);
            }
        }
    }

    /// A rejected recipient (NOQUEUE or with a queue id); greylisting is counted apart. The
    /// recipient's domain counts it when hosted; `global` counts every one (relay access
    /// denied, unknown domains...): what the server turned away.
    fn reject(&mut self, minute: i64, r: Reject<'_>) {
        let c = if r.greylist {
            Counter::Greylist
        } else {
            Counter::Reject
        };
        if let Some(d) = self.domains.lookup(domain(r.to)) {
            self.add(minute, d, c, 1);
        }
        self.add(minute, GLOBAL, c, 1);
    }

    /// `(id) Passed SPAM {...}, ... <sender> -> <r1>,<r2>, Queue-ID: ...`
    fn amavis(&mut self, minute: i64, msg: &[u8]) {
        let rest = match msg
            .strip_prefix(b"(")
            .and_then(|m| memchr(b')', m).map(|i| &m[i + 2..]))
        {
            Some(r) => r,
            None => return,
        };
        let rest = match rest
            .strip_prefix(b"Passed ")
            .or_else(|| rest.strip_prefix(b"Blocked "))
        {
            Some(r) => r,
            None => return,
        };
        let counter = if rest.starts_with(b"SPAM") {
            Counter::Spam
        } else if rest.starts_with(b"INFECTED") {
            Counter::Virus
        } else {
            return;
        };
        let mut list = match memmem::find(rest, b" -> ") {
            Some(i) => &rest[i + 4..],
            None => return,
        };
        while let Some((addr, after)) = angle(list) {
            if let Some(d) = self.domains.lookup(domain(addr)) {
                self.add(minute, d, counter, 1);
                self.add(minute, GLOBAL, counter, 1);
            }
            match after.strip_prefix(b",") {
                Some(a) if a.first() == Some(&b'<') => list = a,
                _ => break,
            }
        }
    }

    fn add(&mut self, minute: i64, name: u32, c: Counter, v: u64) {
        if name == GLOBAL {
            // Every counted event adds to `global` once.
            self.activity.last_event = Some(self.second);
            self.activity.queued_since_event = 0;
            self.activity.first_queued_since_event = None;
        }
        let minute = minute.max(self.floor);
        self.buckets.entry((minute, name)).or_default().0[c as usize] += v;
    }

    /// Expires old in-flight messages and resolves held deliveries whose hop never came.
    fn sweep(&mut self, full: bool) {
        self.last_sweep = self.latest;
        let now = self.latest;
        let mut expired_held = Vec::new();
        let mut cap_cut = i64::MIN;
        if full {
            // Over the cap: forget the oldest half of the minutes present.
            let mut t: Vec<i64> = self.msgs.values().map(|m| m.touched).collect();
            t.sort_unstable();
            cap_cut = t.get(t.len() / 2).copied().unwrap_or(i64::MIN);
        }
        self.msgs.retain(|_, m| {
            let hold_over = !m.held.is_empty() && now - m.held[0].minute >= HOLD_MINUTES;
            if hold_over {
                expired_held.push((m.sender, m.size, std::mem::take(&mut m.held)));
                if m.removed {
                    return false;
                }
            }
            now - m.touched < EXPIRE_MINUTES && m.touched > cap_cut
        });
        for (sender, size, held) in expired_held {
            for h in held {
                let d = self.domains.lookup(domain(&h.to));
                self.count(h.minute, sender, size, d, h.status);
            }
        }
    }

    /// Hands out the counters of every minute before `before` (minutes since the epoch);
    /// later events for those minutes are counted in `before` instead.
    pub fn take_before(&mut self, before: i64) -> Vec<(i64, String, Counters)> {
        self.floor = self.floor.max(before);
        let keys: Vec<(i64, u32)> = self
            .buckets
            .keys()
            .filter(|(m, _)| *m < before)
            .copied()
            .collect();
        let mut out: Vec<(i64, String, Counters)> = keys
            .into_iter()
            .filter_map(|k| {
                self.buckets
                    .remove(&k)
                    .map(|c| (k.0, self.domains.name(k.1).to_string(), c))
            })
            .collect();
        out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        out
    }

    /// Every counter not handed out yet, without moving the floor (kept for the next run).
    pub fn take_rest(&mut self) -> Vec<(i64, String, Counters)> {
        let mut out: Vec<(i64, String, Counters)> = self
            .buckets
            .drain()
            .map(|(k, c)| (k.0, self.domains.name(k.1).to_string(), c))
            .collect();
        out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        out
    }

    /// Resolves every held delivery now (end of input in tests and one-shot parses).
    pub fn finish(&mut self) {
        self.latest = self.latest.saturating_add(HOLD_MINUTES);
        self.sweep(false);
        self.latest -= HOLD_MINUTES;
    }

    /// Totals per name over everything not yet handed out (tests, `stats parse` summary).
    pub fn totals(&self) -> std::collections::BTreeMap<String, Counters> {
        let mut out = std::collections::BTreeMap::new();
        for ((_, n), c) in &self.buckets {
            out.entry(self.domains.name(*n).to_string())
                .or_insert_with(Counters::default)
                .add(c);
        }
        out
    }

    /// The in-flight messages and pending minutes, to carry over to the next run.
    pub fn export(&self) -> Carry {
        let name = |s: Sender| match s {
            Sender::Hosted(i) => Some(self.domains.name(i).to_string()),
            _ => None,
        };
        Carry {
            messages: self
                .msgs
                .iter()
                .map(|(q, m)| CarriedMsg {
                    qid: q.text(),
                    touched: m.touched,
                    sender: name(m.sender),
                    sender_known: m.sender != Sender::Unknown,
                    size: m.size,
                    loopback: m.loopback,
                    linked: m.linked,
                    removed: m.removed,
                    origs: m
                        .origs
                        .iter()
                        .map(|(t, d)| {
                            (
                                String::from_utf8_lossy(t).into_owned(),
                                d.map(|i| self.domains.name(i).to_string()),
                            )
                        })
                        .collect(),
                    held: m
                        .held
                        .iter()
                        .map(|h| {
                            (
                                h.minute,
                                String::from_utf8_lossy(&h.to).into_owned(),
                                h.status == Status::Bounced,
                            )
                        })
                        .collect(),
                })
                .collect(),
            floor: (self.floor != i64::MIN).then_some(self.floor),
        }
    }

    pub fn import(&mut self, carry: Carry) {
        let dom = |d: &Option<String>| d.as_deref().and_then(|n| self.domains.lookup(n.as_bytes()));
        for c in carry.messages {
            let Some(q) = Qid::parse(c.qid.as_bytes()) else {
                continue;
            };
            let sender = match (c.sender_known, dom(&c.sender)) {
                (false, _) => Sender::Unknown,
                (true, Some(i)) => Sender::Hosted(i),
                (true, None) => Sender::Foreign,
            };
            let m = Msg {
                touched: c.touched,
                sender,
                size: c.size,
                loopback: c.loopback,
                linked: c.linked,
                removed: c.removed,
                origs: c
                    .origs
                    .iter()
                    .map(|(t, d)| (t.as_bytes().into(), dom(d)))
                    .collect(),
                held: c
                    .held
                    .iter()
                    .map(|(minute, to, bounced)| Held {
                        minute: *minute,
                        to: to.as_bytes().into(),
                        status: if *bounced {
                            Status::Bounced
                        } else {
                            Status::Sent
                        },
                    })
                    .collect(),
            };
            self.latest = self.latest.max(c.touched);
            self.msgs.insert(q, m);
        }
        if let Some(f) = carry.floor {
            self.floor = self.floor.max(f);
        }
    }
}

fn entry(msgs: &mut QidMap<Msg>, qid: Qid, minute: i64) -> &mut Msg {
    let m = msgs.entry(qid).or_insert_with(|| Msg::new(minute));
    m.touched = minute;
    m
}

/// What one run hands to the next: messages still in flight.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Carry {
    pub messages: Vec<CarriedMsg>,
    pub floor: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CarriedMsg {
    pub qid: String,
    pub touched: i64,
    pub sender: Option<String>,
    pub sender_known: bool,
    pub size: u64,
    pub loopback: bool,
    pub linked: bool,
    pub removed: bool,
    pub origs: Vec<(String, Option<String>)>,
    pub held: Vec<(i64, String, bool)>,
}

#[derive(Debug)]
struct Reject<'a> {
    to: &'a [u8],
    greylist: bool,
}

/// `reject: RCPT from ...: 550 ...; from=<a> to=<b> proto=...` (also milter-reject, and
/// postscreen's `from=<a>, to=<b>`).
fn reject_text(body: &[u8]) -> Option<Reject<'_>> {
    if !(body.starts_with(b"reject: ") || body.starts_with(b"milter-reject: ")) {
        return None;
    }
    let f = memmem::find(body, b"from=<")?;
    let (_, after) = angle(&body[f + 5..])?;
    let t = memmem::find(after, b"to=<")?;
    let (to, _) = angle(&after[t + 3..])?;
    Some(Reject {
        to,
        greylist: memmem::find(&body[..f], b"reylist").is_some(),
    })
}

/// `<addr>rest` → (addr, rest).
fn angle(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let b = b.strip_prefix(b"<")?;
    let end = memchr(b'>', b)?;
    Some((&b[..end], &b[end + 1..]))
}

/// The text between the first `[` and the following `]`.
fn bracket(b: &[u8]) -> Option<&[u8]> {
    let s = memchr(b'[', b)?;
    let e = memchr(b']', &b[s..])?;
    Some(&b[s + 1..s + e])
}

fn is_loopback(ip: &[u8]) -> bool {
    ip.starts_with(b"127.") || ip == b"::1" || ip == b"ipv6:::1"
}

fn domain(addr: &[u8]) -> &[u8] {
    match memchr::memrchr(b'@', addr) {
        Some(i) => &addr[i + 1..],
        None => b"",
    }
}

/// The sender's domain, with an SRS address reversed to the original sender's domain:
/// `SRS0=HHH=TT=orig.example=user@fwd` and `SRS1=HHH=fwd==HHH=TT=orig.example=user@fwd`.
pub(crate) fn sender_domain(addr: &[u8]) -> &[u8] {
    let at = match memchr::memrchr(b'@', addr) {
        Some(i) => i,
        None => return b"",
    };
    let local = &addr[..at];
    if local.len() > 5
        && (local[..4].eq_ignore_ascii_case(b"SRS0") || local[..4].eq_ignore_ascii_case(b"SRS1"))
        && matches!(local[4], b'=' | b'+' | b'-')
    {
        let mut rest = &local[5..];
        if local[..4].eq_ignore_ascii_case(b"SRS1") {
            match memmem::find(rest, b"==") {
                Some(i) => rest = &rest[i + 2..],
                None => return &addr[at + 1..],
            }
        }
        // HHH=TT=domain=user
        let mut parts = rest.splitn(4, |c| *c == b'=');
        let (_, _, d, user) = (parts.next(), parts.next(), parts.next(), parts.next());
        if let (Some(d), Some(_)) = (d, user) {
            if !d.is_empty() {
                return d;
            }
        }
    }
    &addr[at + 1..]
}

fn num(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |a, c| a * 10 + (c - b'0') as i64))
}

fn month(b: &[u8]) -> Option<u32> {
    const M: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    M.iter().position(|m| m[..] == *b).map(|i| i as u32 + 1)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The local zone's offset (minutes east) at a local minute.
fn local_offset_minutes(local_minute: i64) -> i64 {
    use chrono::{Local, Offset, TimeZone};
    let naive = chrono::DateTime::from_timestamp(local_minute * 60, 0).map(|d| d.naive_utc());
    naive
        .and_then(|n| Local.offset_from_local_datetime(&n).earliest())
        .map(|o| o.fix().local_minus_utc() as i64 / 60)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
