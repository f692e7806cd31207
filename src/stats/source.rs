//! Where the mail log's lines come from, in one place: the log file, followed from its mark
//! (device, inode, first bytes, offset) across rotation and truncation, or the mail facility
//! of the journal after its cursor (`journalctl`, through `system::cmd`). Either way whole
//! lines are fed to the parser and the new mark or cursor goes back into the state.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::parser::Parser;
use super::state::State;
use super::{Settings, StatsError};
use crate::system::cmd::{Cmd, CmdError};

/// A log file not written for this long while the journal gets mail lines is stale (the
/// direct manager's log after a boot with systemd, rsyslog removed): the journal is read.
const STALE_FILE_SECS: i64 = 600;
/// How many first bytes identify a file besides its inode (inodes are reused).
const HEAD: usize = 256;
const CHUNK: usize = 1 << 20;
/// A "line" longer than this is garbage: dropped, so memory stays bounded.
const MAX_LINE: usize = 64 << 10;
/// The name of the journal in the state (a file is named by its path).
pub const JOURNAL: &str = "journal";

/// Where lines are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Journal,
}

impl Source {
    /// The log file when it is written, else the journal. Both exist when rsyslog writes the
    /// file from the journal (the file is read: it is what the admin configured), or when the
    /// file was left by the direct manager or a removed syslog daemon: then the journal, once
    /// its newest mail line is `STALE_FILE_SECS` younger than the file.
    pub fn choose(settings: &Settings) -> Result<Source, StatsError> {
        let log = &settings.log_file;
        let modified = std::fs::metadata(log).ok().and_then(|m| m.modified().ok());
        match (modified, settings.journal) {
            (Some(_), false) => Ok(Source::File(log.clone())),
            (None, true) => Ok(Source::Journal),
            (None, false) => Err(StatsError::NoLog {
                path: log.display().to_string(),
            }),
            (Some(m), true) => {
                let file_time = DateTime::<Utc>::from(m).timestamp();
                match journal_newest() {
                    Some(j) if j > file_time + STALE_FILE_SECS => Ok(Source::Journal),
                    _ => Ok(Source::File(log.clone())),
                }
            }
        }
    }

    /// The name kept in the state (a file's path, or `journal`).
    pub fn key(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Journal => JOURNAL.into(),
        }
    }

    /// Feeds `parser` what this source gained since where `st` says it stopped, and moves that
    /// mark (the file's `FileMark`, or the journal cursor). On an error the mark is unchanged.
    pub fn read(&self, st: &mut State, parser: &mut Parser) -> Result<ReadReport, StatsError> {
        match self {
            Source::File(log) => {
                let key = self.key();
                let (mark, report) = read_file(log, st.files.get(&key), parser)?;
                st.files.insert(key, mark);
                Ok(report)
            }
            Source::Journal => {
                st.journal_cursor = read_journal(st.journal_cursor.clone(), parser)?;
                Ok(ReadReport::default())
            }
        }
    }
}

/// Where a log file was read up to, and how to know it is still the same file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    /// Length and FNV hash of the first bytes when last read.
    pub head_len: u64,
    pub head_hash: u64,
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, c| {
        (h ^ *c as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn head_of(file: &mut File, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(0))?;
    let mut got = 0;
    while got < len {
        let n = file.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}

/// What one read did, for the report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadReport {
    pub bytes: u64,
    /// Read the rest of the rotated file (`<log>.1`) first.
    pub rotated: bool,
    /// The file shrank under the same inode (copytruncate): read again from the start.
    pub truncated: bool,
}

/// Reads what was appended to `path` since `mark` (whole lines only), following a rotation to
/// `<path>.1`, and returns the new mark.
fn read_file(
    path: &Path,
    mark: Option<&FileMark>,
    parser: &mut Parser,
) -> Result<(FileMark, ReadReport), StatsError> {
    let mut report = ReadReport::default();
    let mut file = File::open(path).map_err(|e| StatsError::io(path, e))?;
    let meta = file.metadata().map_err(|e| StatsError::io(path, e))?;
    let same_file = |m: &FileMark, f: &mut File, dev: u64, ino: u64| -> std::io::Result<bool> {
        if m.dev != dev || m.ino != ino {
            return Ok(false);
        }
        let head = head_of(f, m.head_len as usize)?;
        Ok(head.len() as u64 == m.head_len && fnv(&head) == m.head_hash)
    };
    let mut start = 0u64;
    if let Some(m) = mark {
        if same_file(m, &mut file, meta.dev(), meta.ino()).map_err(|e| StatsError::io(path, e))? {
            if meta.len() < m.offset {
                report.truncated = true;
            } else {
                start = m.offset;
            }
        } else {
            // Rotated: finish the old file (now `<path>.1`) if it is still there.
            let old = rotated_name(path);
            if let Ok(mut f) = File::open(&old) {
                if let Ok(om) = f.metadata() {
                    if same_file(m, &mut f, om.dev(), om.ino()).unwrap_or(false) {
                        report.bytes += read_lines(&mut f, m.offset, parser, true)
                            .map_err(|e| StatsError::io(&old, e))?
                            - m.offset;
                        report.rotated = true;
                    }
                }
            }
        }
    }
    let end = read_lines(&mut file, start, parser, false).map_err(|e| StatsError::io(path, e))?;
    report.bytes += end - start;
    let head = head_of(&mut file, HEAD).map_err(|e| StatsError::io(path, e))?;
    // Identify the file by the bytes already read only: the head may still be growing.
    let head = &head[..head.len().min(end as usize)];
    Ok((
        FileMark {
            dev: meta.dev(),
            ino: meta.ino(),
            offset: end,
            head_len: head.len() as u64,
            head_hash: fnv(head),
        },
        report,
    ))
}

fn rotated_name(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// Feeds the lines from `start`; returns the offset after the last whole line (or the end of
/// the file when `to_eof`: a rotated file does not grow any more).
fn read_lines<R: Read + Seek>(
    r: &mut R,
    start: u64,
    parser: &mut Parser,
    to_eof: bool,
) -> std::io::Result<u64> {
    r.seek(SeekFrom::Start(start))?;
    feed_stream(r, start, parser, to_eof)
}

/// Streams `r` into the parser in 1 MB chunks; an over-long line is dropped.
pub fn feed_stream<R: Read>(
    r: &mut R,
    start: u64,
    parser: &mut Parser,
    to_eof: bool,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK + MAX_LINE];
    let mut filled = 0usize;
    let mut consumed = start;
    let mut skipping = false;
    loop {
        let n = r.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
        let mut from = 0;
        if skipping {
            match memchr::memchr(b'\n', &buf[..filled]) {
                Some(i) => {
                    from = i + 1;
                    skipping = false;
                }
                None => {
                    consumed += filled as u64;
                    filled = 0;
                    continue;
                }
            }
        }
        match memchr::memrchr(b'\n', &buf[from..filled]) {
            Some(i) => {
                let end = from + i + 1;
                parser.feed(&buf[from..end]);
                consumed += end as u64;
                buf.copy_within(end..filled, 0);
                filled -= end;
            }
            None => {
                consumed += from as u64;
                buf.copy_within(from..filled, 0);
                filled -= from;
                if filled >= MAX_LINE {
                    parser.input.skipped += 1;
                    consumed += filled as u64;
                    filled = 0;
                    skipping = true;
                }
            }
        }
    }
    if to_eof && filled > 0 && !skipping {
        parser.feed(&buf[..filled]);
        consumed += filled as u64;
    }
    Ok(consumed)
}

/// Streams the mail facility of the journal after `cursor`; returns the new cursor.
fn read_journal(cursor: Option<String>, parser: &mut Parser) -> Result<Option<String>, StatsError> {
    let mut cmd = Cmd::new("journalctl").args([
        "--output=short-iso",
        "--no-pager",
        "--quiet",
        "--show-cursor",
        "SYSLOG_FACILITY=2",
    ]);
    if let Some(c) = &cursor {
        cmd = cmd.arg(format!("--after-cursor={c}"));
    }
    // The wording of journalctl's errors as before it ran through `Cmd`.
    let journal_error = |e: CmdError, before: &str| {
        StatsError::Journal(match e {
            CmdError::Spawn { source, .. } => format!("{before}{source}"),
            other => other.to_string(),
        })
    };
    let mut running = cmd
        .stream()
        .map_err(|e| journal_error(e, "cannot run journalctl: "))?;
    let mut tail = TailReader {
        inner: &mut running,
        tail: Vec::new(),
    };
    feed_stream(&mut tail, 0, parser, true).map_err(|e| StatsError::Journal(e.to_string()))?;
    let last_bytes = tail.tail;
    let out = running.finish().map_err(|e| journal_error(e, ""))?;
    if !out.success {
        return Err(StatsError::Journal(out.stderr.trim().to_string()));
    }
    let text = String::from_utf8_lossy(&last_bytes);
    let new = text
        .rsplit_once("-- cursor: ")
        .map(|(_, c)| c.trim().to_string())
        .filter(|c| !c.is_empty());
    if new.is_some() {
        parser.input.skipped = parser.input.skipped.saturating_sub(1); // the cursor line
    }
    Ok(new.or(cursor))
}

/// Keeps the last bytes read (where journalctl prints the cursor).
#[derive(Debug)]
struct TailReader<R> {
    inner: R,
    tail: Vec<u8>,
}

impl<R: Read> Read for TailReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tail.extend_from_slice(&buf[..n]);
        if self.tail.len() > 4096 {
            let cut = self.tail.len() - 1024;
            self.tail.drain(..cut);
        }
        Ok(n)
    }
}

/// The time (seconds since the epoch) of the journal's newest mail line, if it has one.
fn journal_newest() -> Option<i64> {
    let out = Cmd::new("journalctl")
        .args([
            "--output=short-unix",
            "--no-pager",
            "--quiet",
            "--lines=1",
            "SYSLOG_FACILITY=2",
        ])
        .output()
        .ok()?;
    if !out.success {
        return None;
    }
    let stamp = out.stdout.lines().last()?.split_whitespace().next()?;
    stamp.split('.').next()?.parse().ok()
}
