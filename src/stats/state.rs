//! Where the parser stopped: per log file its identity (device, inode, first bytes) and offset,
//! the journal cursor, the messages still in flight and the counters of the minute not yet
//! complete. Persisted as JSON next to the RRD files; reading follows rotation and truncation.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::parser::{Activity, Carry, Counters, Parser, Position};
use super::StatsError;

const VERSION: u32 = 1;
/// How many first bytes identify a file besides its inode (inodes are reused).
const HEAD: usize = 256;
const CHUNK: usize = 1 << 20;
/// A "line" longer than this is garbage: dropped, so memory stays bounded.
const MAX_LINE: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    /// Length and FNV hash of the first bytes when last read.
    pub head_len: u64,
    pub head_hash: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Per log file path.
    #[serde(default)]
    pub files: BTreeMap<String, FileMark>,
    #[serde(default)]
    pub journal_cursor: Option<String>,
    #[serde(default)]
    pub carry: Carry,
    /// Counters of minutes not written to the RRD files yet: (minute, name, counters).
    #[serde(default)]
    pub pending: Vec<(i64, String, Counters)>,
    /// The source read last (`journal` or a file's path) and where it stopped, in time.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub position: Option<Position>,
    #[serde(default)]
    pub activity: Activity,
    #[serde(default)]
    pub last_run: Option<LastRun>,
    /// Since when every line read was one the parser cannot read (seconds).
    #[serde(default)]
    pub unreadable_since: Option<i64>,
}

/// What the last run read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// Seconds since the epoch.
    pub at: i64,
    pub source: String,
    pub lines: u64,
    pub skipped: u64,
}

impl State {
    pub fn load(path: &Path) -> Result<State, StatsError> {
        match std::fs::read(path) {
            Ok(b) => {
                let s: State = serde_json::from_slice(&b).map_err(|e| StatsError::State {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
                version: VERSION,
                ..State::default()
            }),
            Err(e) => Err(StatsError::io(path, e)),
        }
    }

    /// Written to a temporary file then renamed: a crash never leaves half a state. Mode 0600:
    /// the messages in flight name their recipients.
    pub fn save(&self, path: &Path) -> Result<(), StatsError> {
        let text = serde_json::to_vec(self).map_err(|e| StatsError::State {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        crate::system::fs::write_atomic(path, &text, 0o640, None)
            .map_err(|e| StatsError::io(path, e))
    }

    /// The pending counters of `name` for the minutes `from..to` (minutes since the epoch).
    pub fn pending_of(&self, name: &str, from: i64, to: i64) -> Counters {
        let mut c = Counters::default();
        for (m, n, v) in &self.pending {
            if (from..to).contains(m) && n == name {
                c.add(v);
            }
        }
        c
    }

    /// Merges rows into the pending minutes.
    pub fn add_pending(&mut self, rows: Vec<(i64, String, Counters)>) {
        let mut map: HashMap<(i64, String), Counters> = self
            .pending
            .drain(..)
            .map(|(m, n, c)| ((m, n), c))
            .collect();
        for (m, n, c) in rows {
            map.entry((m, n)).or_default().add(&c);
        }
        let mut v: Vec<(i64, String, Counters)> =
            map.into_iter().map(|((m, n), c)| (m, n, c)).collect();
        v.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        self.pending = v;
    }

    /// Takes the pending minutes before `cut`.
    pub fn take_pending(&mut self, cut: i64) -> Vec<(i64, String, Counters)> {
        let (out, keep): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|r| r.0 < cut);
        self.pending = keep;
        out
    }

    pub fn carry(&mut self) -> Carry {
        std::mem::take(&mut self.carry)
    }
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
pub fn read_file(
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
pub fn read_lines<R: Read + Seek>(
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
