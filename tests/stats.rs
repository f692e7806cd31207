//! Statistics: the parser against logs written by the real Postfix, Amavis and Dovecot of an
//! e2e run (tests/stats/traffic.py), with the counts derived from what that run sent.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails loudly

use std::collections::BTreeMap;
use std::path::PathBuf;

use modobox::stats::parser::{Counter, Counters, Domains, Parser, Zone, COUNTERS};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stats")
        .join(name)
}

fn parse(file: &str) -> BTreeMap<String, Counters> {
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut p = Parser::new(
        Domains::new(["example.test", "other.test", "relay.test", "alias.test"]),
        Zone::Fixed(0),
        now,
    );
    p.feed(&std::fs::read(fixture(file)).unwrap());
    p.finish();
    p.totals()
}

fn check(log: &str, expected: &str) {
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture(expected)).unwrap()).unwrap();
    let got = parse(log);
    let counts = exp["counts"].as_object().unwrap();
    for (name, want) in counts {
        let have = got.get(name).copied().unwrap_or_default();
        for (i, c) in COUNTERS.iter().enumerate() {
            if c.starts_with("size_") {
                continue; // sizes: checked below against the counts
            }
            let w = want[*c].as_u64().unwrap_or(0);
            assert_eq!(have.0[i], w, "{log}: {name}.{c}");
        }
        // Postfix's size of what was delivered: more than nothing whenever a message counted.
        assert_eq!(
            have.get(Counter::SizeRecv) > 0,
            have.get(Counter::Recv) > 0,
            "{log}: {name}"
        );
        assert_eq!(
            have.get(Counter::SizeSent) > 0,
            have.get(Counter::Sent) > 0,
            "{log}: {name}"
        );
    }
    for name in got.keys() {
        assert!(
            counts.contains_key(name),
            "{log}: unexpected counts for {name}: {:?}",
            got[name]
        );
    }
}

#[test]
fn journal_classic_syslog_lines() {
    check("journal-short.log", "expected.json");
}

#[test]
fn journal_short_iso_lines() {
    check("journal-iso.log", "expected.json");
}

#[test]
fn rsyslog_rfc3339_mail_log() {
    check("mail.log", "expected.json");
}

#[test]
fn postfix_maillog_file() {
    check("postfix-maillog.log", "postfix-maillog.expected.json");
}

#[test]
fn sizes_are_at_least_what_was_sent() {
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    let sent_bytes: u64 = exp["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["from"]
                .as_str()
                .is_some_and(|f| f.ends_with("@example.test"))
        })
        .filter(|c| c["subject"] != "bounce")
        .map(|c| c["bytes"].as_u64().unwrap() * c["to"].as_array().unwrap().len() as u64)
        .sum();
    let got = parse("journal-short.log");
    let size_sent = got["example.test"].get(Counter::SizeSent);
    assert!(size_sent >= sent_bytes, "{size_sent} < {sent_bytes}");
}

// ---- incremental reading, RRD files, graphs (temporary directories; rrdtool on the host) ----

use std::io::Write;

use modobox::stats::{self, graph, rrd::Rrd, Settings};

const NAMES: [&str; 4] = ["example.test", "other.test", "relay.test", "alias.test"];

fn names() -> Vec<String> {
    NAMES.iter().map(|s| s.to_string()).collect()
}

fn settings(dir: &std::path::Path) -> Settings {
    Settings {
        log_file: dir.join("mail.log"),
        journal: false,
        rrd_dir: dir.join("rrd"),
        legacy_state_file: None,
        zone: Zone::Fixed(0),
    }
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// The example.test and global totals of the day before `now`, from the RRD files.
fn day_totals(dir: &std::path::Path, name: &str, now: &str) -> BTreeMap<String, f64> {
    stats::show(&dir.join("rrd"), name, 86_400, at(now)).unwrap()
}

fn lines_of(file: &str) -> Vec<Vec<u8>> {
    std::fs::read(fixture(file))
        .unwrap()
        .split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.to_vec())
        .collect()
}

fn append(path: &std::path::Path, lines: &[Vec<u8>]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
}

fn expected_recv(name: &str) -> f64 {
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    exp["counts"][name]["recv"].as_f64().unwrap()
}

// The fixture's traffic happened at 2026-12-01T16:38Z; "now" is well after, so every minute is
// complete and written.
const LATER: &str = "2026-12-01T18:00:00Z";

#[test]
fn incremental_runs_in_small_pieces_count_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let lines = lines_of("mail.log");
    // Pieces of 7 lines, some ending in the middle of a line (written later).
    let mut i = 0;
    let mut runs = 0;
    while i < lines.len() {
        let j = (i + 7).min(lines.len());
        append(&s.log_file, &lines[i..j]);
        if j < lines.len() {
            // half of the next line, without its newline
            let half = &lines[j][..lines[j].len() / 2];
            std::fs::OpenOptions::new()
                .append(true)
                .open(&s.log_file)
                .unwrap()
                .write_all(half)
                .unwrap();
            stats::update(&s, &names(), None, at("2026-12-01T16:30:00Z")).unwrap();
            let rest = &lines[j][lines[j].len() / 2..];
            std::fs::OpenOptions::new()
                .append(true)
                .open(&s.log_file)
                .unwrap()
                .write_all(rest)
                .unwrap();
            std::fs::OpenOptions::new()
                .append(true)
                .open(&s.log_file)
                .unwrap()
                .write_all(b"\n")
                .unwrap();
            i = j + 1;
        } else {
            i = j;
        }
        stats::update(&s, &names(), None, at("2026-12-01T16:30:00Z")).unwrap();
        runs += 1;
    }
    assert!(runs > 10);
    // Nothing written yet (all minutes after "now"): then one run later writes everything.
    let r = stats::update(&s, &names(), None, at(LATER)).unwrap();
    assert_eq!(r.bytes, 0, "no line read twice");
    let t = day_totals(dir.path(), "example.test", LATER);
    assert_eq!(t["recv"], expected_recv("example.test"));
    assert_eq!(
        day_totals(dir.path(), "global", LATER)["recv"],
        expected_recv("global")
    );
}

#[test]
fn rotation_reads_the_rest_of_the_rotated_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let lines = lines_of("journal-short.log");
    let (a, b) = lines.split_at(lines.len() / 2);
    let (a1, a2) = a.split_at(a.len() / 2);
    append(&s.log_file, a1);
    stats::update(&s, &names(), None, at("2026-12-01T16:30:00Z")).unwrap();
    append(&s.log_file, a2); // written before the rotation, not read yet
    std::fs::rename(&s.log_file, dir.path().join("mail.log.1")).unwrap();
    append(&s.log_file, b);
    let r = stats::update(&s, &names(), None, at(LATER)).unwrap();
    assert!(r.rotated, "{r:?}");
    assert_eq!(
        day_totals(dir.path(), "example.test", LATER)["recv"],
        expected_recv("example.test")
    );
    assert_eq!(
        day_totals(dir.path(), "relay.test", LATER)["recv"],
        expected_recv("relay.test")
    );
}

#[test]
fn truncated_file_is_read_again_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let lines = lines_of("journal-iso.log");
    append(&s.log_file, &lines);
    stats::update(&s, &names(), None, at("2026-12-01T16:30:00Z")).unwrap();
    // copytruncate: same inode, shorter file, new lines
    std::fs::write(&s.log_file, b"").unwrap();
    append(&s.log_file, &lines[..5]);
    let r = stats::update(&s, &names(), None, at(LATER)).unwrap();
    assert!(r.truncated, "{r:?}");
    assert_eq!(
        day_totals(dir.path(), "example.test", LATER)["recv"],
        expected_recv("example.test")
    );
}

#[test]
fn garbage_and_overlong_lines_do_not_stop_the_parser() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let lines = lines_of("mail.log");
    let mut f = std::fs::File::create(&s.log_file).unwrap();
    f.write_all(&vec![b'x'; 3 << 20]).unwrap(); // a 3 MB "line"
    f.write_all(b"\n\x00\x01\xff garbage\n").unwrap();
    drop(f);
    append(&s.log_file, &lines);
    let r = stats::update(&s, &names(), None, at(LATER)).unwrap();
    assert!(r.skipped >= 2, "{r:?}");
    assert_eq!(
        day_totals(dir.path(), "example.test", LATER)["recv"],
        expected_recv("example.test")
    );
}

#[test]
fn rrd_layout_is_modoboa_stats() {
    let dir = tempfile::tempdir().unwrap();
    let rrd = Rrd::new(dir.path());
    rrd.create("example.test", 1_796_140_800).unwrap();
    let out = std::process::Command::new("rrdtool")
        .arg("info")
        .arg(rrd.path("example.test"))
        .output()
        .unwrap();
    let info = String::from_utf8(out.stdout).unwrap();
    assert!(info.contains("step = 60\n"), "{info}");
    for (i, c) in COUNTERS.iter().enumerate() {
        assert!(info.contains(&format!("ds[{c}].index = {i}\n")), "{c}");
        assert!(
            info.contains(&format!("ds[{c}].type = \"ABSOLUTE\"\n")),
            "{c}"
        );
        assert!(
            info.contains(&format!("ds[{c}].minimal_heartbeat = 120\n")),
            "{c}"
        );
    }
    for (i, (cf, steps)) in ["AVERAGE", "MAX"]
        .iter()
        .flat_map(|cf| [8, 56, 280, 3360].map(move |s| (cf, s)))
        .enumerate()
    {
        assert!(info.contains(&format!("rra[{i}].cf = \"{cf}\"\n")), "{i}");
        assert!(info.contains(&format!("rra[{i}].rows = 198\n")), "{i}");
        assert!(
            info.contains(&format!("rra[{i}].pdp_per_row = {steps}\n")),
            "{i}"
        );
    }
    assert!(!info.contains("rra[8]"));
}

#[test]
fn an_existing_modoboa_stats_file_without_greylist_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    std::fs::create_dir_all(&s.rrd_dir).unwrap();
    let mut args = vec![
        "create".to_string(),
        s.rrd_dir.join("example.test.rrd").display().to_string(),
        "--start".into(),
        "1796083200".into(),
        "--step".into(),
        "60".into(),
    ];
    for c in &COUNTERS[..8] {
        args.push(format!("DS:{c}:ABSOLUTE:120:0:U"));
    }
    for cf in ["AVERAGE", "MAX"] {
        for st in [8, 56, 280, 3360] {
            args.push(format!("RRA:{cf}:0.5:{st}:198"));
        }
    }
    assert!(std::process::Command::new("rrdtool")
        .args(&args)
        .status()
        .unwrap()
        .success());
    append(&s.log_file, &lines_of("mail.log"));
    stats::update(&s, &names(), None, at(LATER)).unwrap();
    let t = day_totals(dir.path(), "example.test", LATER);
    assert_eq!(t["recv"], expected_recv("example.test"));
    assert!(!t.contains_key("greylist"));
    let svg = dir.path().join("old.svg");
    graph::draw(
        &Rrd::new(&s.rrd_dir),
        "example.test",
        graph::Kind::Traffic,
        1_796_140_000,
        1_796_148_000,
        &svg,
    )
    .unwrap();
}

#[test]
fn graphs_are_valid_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    append(&s.log_file, &lines_of("mail.log"));
    stats::update(&s, &names(), None, at(LATER)).unwrap();
    let rrd = Rrd::new(&s.rrd_dir);
    let end = at(LATER).timestamp();
    for (period, kind, file) in [
        (graph::Period::Day, graph::Kind::Traffic, "d.svg"),
        (graph::Period::Week, graph::Kind::Size, "w.png"),
        (graph::Period::Month, graph::Kind::Traffic, "m.png"),
        (graph::Period::Year, graph::Kind::Size, "y.svg"),
    ] {
        let out = dir.path().join(file);
        let start = end - period.seconds().unwrap();
        graph::draw(&rrd, "global", kind, start, end, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        if file.ends_with(".png") {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{file}");
        } else {
            let text = String::from_utf8(bytes).unwrap();
            assert!(
                text.starts_with("<?xml")
                    && text.contains("<svg")
                    && text.trim_end().ends_with("</svg>"),
                "{file}"
            );
        }
    }
    let e = graph::draw(
        &rrd,
        "nowhere.test",
        graph::Kind::Traffic,
        end - 10,
        end,
        &dir.path().join("x.svg"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no statistics for nowhere.test"), "{e}");
    let e = graph::draw(
        &rrd,
        "global",
        graph::Kind::Traffic,
        end - 10,
        end,
        &dir.path().join("x.gif"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--out") && e.contains(".svg"), "{e}");
}

#[test]
fn a_second_run_at_the_same_time_is_refused_not_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    append(&s.log_file, &lines_of("mail.log"));
    std::fs::create_dir_all(&s.rrd_dir).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(s.state_file().with_extension("lock"))
        .unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let e = stats::update(&s, &names(), None, at(LATER))
        .unwrap_err()
        .to_string();
    assert!(e.contains("another statistics update"), "{e}");
    drop(held);
    stats::update(&s, &names(), None, at(LATER)).unwrap();
}

#[test]
fn settings_errors_name_the_field_and_the_rule() {
    let e = modobox::config::Config::from_toml(
        "hostname = \"mail.example.com\"\n[stats]\nstate_file = \"relative.json\"\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("stats.state_file") && e.contains("absolute"),
        "{e}"
    );
    let e = modobox::config::Config::from_toml(
        "hostname = \"mail.example.com\"\n[stats]\nstate_file = \"/srv/vmail/s.json\"\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("stats.state_file") && e.contains("mail_root"),
        "{e}"
    );
    let e = modobox::config::Config::from_toml(
        "hostname = \"mail.example.com\"\n[stats]\nlogfile = \"/var/log/x\"\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown field `logfile`"), "{e}");
}

#[test]
fn cli_show_and_graph_from_an_rrd_dir() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    append(&s.log_file, &lines_of("mail.log"));
    stats::update(&s, &names(), None, at(LATER)).unwrap();
    let bin = env!("CARGO_BIN_EXE_modobox");
    let end = at(LATER).timestamp().to_string();
    let out = std::process::Command::new(bin)
        .args([
            "--config",
            "/nonexistent.toml",
            "stats",
            "show",
            "relay.test",
            "--json",
            "--end",
            &end,
        ])
        .env("MODOBOX_RRD_DIR", &s.rrd_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["totals"]["recv"], expected_recv("relay.test") as u64);
    let svg = dir.path().join("w.svg");
    let out = std::process::Command::new(bin)
        .args(["stats", "graph", "global", "--period", "week", "--out"])
        .arg(&svg)
        .arg("--rrd-dir")
        .arg(&s.rrd_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let out = std::process::Command::new(bin)
        .args(["stats", "show", "global", "--period", "custom", "--rrd-dir"])
        .arg(&s.rrd_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--start: is required with --period custom")
    );
}

/// `show` totals of `name` for the day before `now`, as counters.
fn shown(dir: &std::path::Path, name: &str, now: &str) -> (f64, f64, f64) {
    let t = day_totals(dir, name, now);
    (t["recv"], t["reject"], t["spam"])
}

fn expected(name: &str) -> (f64, f64, f64) {
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    let c = &exp["counts"][name];
    (
        c["recv"].as_f64().unwrap(),
        c["reject"].as_f64().unwrap(),
        c["spam"].as_f64().unwrap(),
    )
}

#[test]
fn counts_show_as_soon_as_a_run_has_read_them() {
    // The fixture's traffic is all in the minute 16:38. A run in that minute keeps it pending;
    // a run two minutes later writes it into an 8-minute row not complete yet. Both times
    // `show` (the CLI, the web page) already has every count.
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    append(&s.log_file, &lines_of("mail.log"));
    let r = stats::update(&s, &names(), None, at("2026-12-01T16:38:59Z")).unwrap();
    assert_eq!(r.files_updated, 0, "nothing complete yet: {r:?}");
    for name in ["example.test", "global"] {
        assert_eq!(
            shown(dir.path(), name, "2026-12-01T16:38:59Z"),
            expected(name),
            "{name}, pending minute"
        );
    }
    let r = stats::update(&s, &names(), None, at("2026-12-01T16:40:30Z")).unwrap();
    assert!(r.files_updated > 0, "{r:?}");
    for name in ["example.test", "global", "relay.test"] {
        assert_eq!(
            shown(dir.path(), name, "2026-12-01T16:40:30Z"),
            expected(name),
            "{name}, row being filled"
        );
    }
    // Once the row is complete, the same totals (no double count of the row).
    stats::update(&s, &names(), None, at(LATER)).unwrap();
    for name in ["example.test", "global", "relay.test"] {
        assert_eq!(
            shown(dir.path(), name, LATER),
            expected(name),
            "{name}, later"
        );
    }
    // A period that ended before the traffic counts none of it.
    let before = stats::show_between(
        &s.rrd_dir,
        "global",
        at("2026-12-01T10:00:00Z").timestamp(),
        at("2026-12-01T16:00:00Z").timestamp(),
    )
    .unwrap();
    assert_eq!(before["recv"], 0.0);
}

#[test]
fn the_parser_state_belongs_to_its_rrd_directory() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    append(&s.log_file, &lines_of("mail.log"));
    let all = stats::update(&s, &names(), None, at(LATER)).unwrap();
    assert_eq!(all.lines, 348);
    assert!(s.rrd_dir.join(stats::STATE_FILE).exists());
    // The same log parsed into an RRD directory that never saw it: read from the start.
    let mut other = settings(dir.path());
    other.set_rrd_dir(dir.path().join("rrd-new"));
    let r = stats::update(&other, &names(), Some(&s.log_file), at(LATER)).unwrap();
    assert_eq!(r.lines, 348, "{r:?}");
    for name in ["example.test", "global"] {
        assert_eq!(
            stats::show(&other.rrd_dir, name, 86_400, at(LATER)).unwrap()["recv"],
            expected(name).0
        );
    }
    // Each directory remembers its own position: nothing is read twice in either.
    assert_eq!(
        stats::update(&s, &names(), None, at(LATER)).unwrap().bytes,
        0
    );
    let again = stats::update(&other, &names(), Some(&s.log_file), at(LATER)).unwrap();
    assert_eq!(again.bytes, 0);
    // The state file holds recipients of messages in flight: the owner, and the group of the
    // statistics directory (the web UI's, which reads the pending minutes), nobody else.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.state_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

#[test]
fn the_state_of_an_older_version_is_moved_into_the_rrd_directory() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let half = lines_of("mail.log");
    append(&s.log_file, &half[..200]);
    stats::update(&s, &names(), None, at("2026-12-01T16:38:59Z")).unwrap();
    // An older modobox kept this state at stats.state_file.
    let legacy = dir.path().join("var/stats-state.json");
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::rename(s.state_file(), &legacy).unwrap();
    let mut upgraded = settings(dir.path());
    upgraded.legacy_state_file = Some(legacy.clone());
    append(&s.log_file, &half[200..]);
    let r = stats::update(&upgraded, &names(), None, at(LATER)).unwrap();
    assert_eq!(r.lines, 148, "went on where the old state stopped: {r:?}");
    assert!(!legacy.exists() && upgraded.state_file().exists());
    assert_eq!(shown(dir.path(), "global", LATER), expected("global"));
}

/// A second source that also holds the lines already read from the first (rsyslog installed
/// next to the journal, the direct manager's log after the journal) is read from where the
/// first stopped, in time: every line counted once, whether the switch falls between two
/// seconds or in the middle of one.
#[test]
fn a_new_source_resumes_where_the_last_one_stopped() {
    let lines = lines_of("mail.log");
    let second_of = |l: &[u8]| l[..19].to_vec();
    let mid_second = (1..lines.len())
        .find(|i| second_of(&lines[*i]) == second_of(&lines[*i - 1]) && *i > 100)
        .unwrap();
    let between = (mid_second..lines.len())
        .find(|i| second_of(&lines[*i]) != second_of(&lines[*i - 1]))
        .unwrap();
    for cut in [mid_second, between] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.log_file = dir.path().join("first.log");
        append(&s.log_file, &lines[..cut]);
        stats::update(&s, &names(), None, at("2026-12-01T16:38:59Z")).unwrap();
        // The new source has every line, those read already included.
        s.log_file = dir.path().join("second.log");
        append(&s.log_file, &lines);
        let r = stats::update(&s, &names(), None, at(LATER)).unwrap();
        assert_eq!(r.already_read, cut as u64, "cut {cut}: {r:?}");
        assert!(r
            .summary()
            .contains(&format!("{cut} read before from another source")));
        for name in ["example.test", "global", "relay.test"] {
            assert_eq!(
                shown(dir.path(), name, LATER),
                expected(name),
                "{name}, cut {cut}"
            );
        }
        // Back to the first source, grown meanwhile: only its new lines after the position.
        s.log_file = dir.path().join("first.log");
        append(&s.log_file, &lines[cut..]);
        let back = stats::update(&s, &names(), None, at(LATER)).unwrap();
        assert_eq!(back.already_read, (lines.len() - cut) as u64, "{back:?}");
        assert_eq!(shown(dir.path(), "global", LATER), expected("global"));
    }
}

#[test]
fn the_statistics_check_says_when_mail_flows_but_nothing_is_counted() {
    use modobox::health::checks::Level;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let check = |now: &str| stats::check(&s, at(now));
    assert_eq!(check(LATER).level, Level::Ok, "before any run");
    // Real traffic: counted, ok.
    append(&s.log_file, &lines_of("mail.log"));
    stats::update(&s, &names(), None, at(LATER)).unwrap();
    let c = check(LATER);
    assert_eq!(c.level, Level::Ok, "{c:?}");
    assert!(c.message.contains("2026-12-01 16:38"), "{c:?}");
    // Then for more than an hour Postfix queues mail that counts nowhere (as when the hosted
    // names or the log format are not what the parser knows).
    let mut queued = Vec::new();
    for (i, t) in ["18:01", "18:20", "18:40", "19:00", "19:05"]
        .iter()
        .enumerate()
    {
        queued.push(
            format!(
                "2026-12-01T{t}:00+00:00 mail postfix/cleanup[7]: 4ABCD{i}: message-id=<{i}@x>"
            )
            .into_bytes(),
        );
    }
    append(&s.log_file, &queued[..4]);
    stats::update(&s, &names(), None, at("2026-12-01T19:01:00Z")).unwrap();
    assert_eq!(
        check("2026-12-01T19:01:30Z").level,
        Level::Ok,
        "under an hour"
    );
    append(&s.log_file, &queued[4..]);
    stats::update(&s, &names(), None, at("2026-12-01T19:06:00Z")).unwrap();
    let c = check("2026-12-01T19:06:00Z");
    assert_eq!(c.level, Level::Warn, "{c:?}");
    assert!(
        c.message
            .contains("queued 5 messages since 2026-12-01 18:01"),
        "{c:?}"
    );
    assert!(c.message.contains("since 2026-12-01 16:38"), "{c:?}");
    // A counted event clears it.
    append(
        &s.log_file,
        &[b"2026-12-01T19:06:30+00:00 mail postfix/smtpd[9]: NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<a@outside.test> to=<nobody@example.test> proto=ESMTP helo=<x>".to_vec()],
    );
    stats::update(&s, &names(), None, at("2026-12-01T19:07:00Z")).unwrap();
    assert_eq!(check("2026-12-01T19:07:00Z").level, Level::Ok);

    // Lines in a format the parser does not read, for an hour.
    let dir2 = tempfile::tempdir().unwrap();
    let s2 = settings(dir2.path());
    append(
        &s2.log_file,
        &[b"<22>1 2026-12-01T10:00:00Z mail postfix - - - x".to_vec()],
    );
    stats::update(&s2, &names(), None, at("2026-12-01T10:00:00Z")).unwrap();
    assert_eq!(
        stats::check(&s2, at("2026-12-01T10:30:00Z")).level,
        Level::Ok
    );
    append(
        &s2.log_file,
        &[b"<22>1 2026-12-01T11:00:00Z mail postfix - - - y".to_vec()],
    );
    stats::update(&s2, &names(), None, at("2026-12-01T11:01:00Z")).unwrap();
    let c = stats::check(&s2, at("2026-12-01T11:01:00Z"));
    assert_eq!(c.level, Level::Warn, "{c:?}");
    assert!(c.message.contains("format the log parser knows"), "{c:?}");
}
