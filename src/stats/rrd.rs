//! The RRD files, in modoboa-stats' layout, through the `rrdtool` program: one file per hosted
//! name plus `global.rrd`, step 60 s, ABSOLUTE data sources, AVERAGE and MAX archives for the
//! day, week, month and year graphs. Existing modoboa-stats files (without `greylist`) keep
//! working: updates name the data sources each file has.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::parser::{Counters, COUNTERS};
use super::StatsError;
use crate::system::cmd::Cmd;

pub const STEP: i64 = 60;
/// Steps per row of each archive (day, week, month, year graphs), 198 rows each.
pub const ARCHIVES: [u32; 4] = [8, 56, 280, 3360];
pub const ROWS: u32 = 198;
/// Quiet minutes are written as zeros, at most this far back (older gaps stay unknown).
const MAX_FILL_MINUTES: i64 = 10 * 1440;
const BATCH: usize = 500;

/// `ds[sent].index = 0` of `rrdtool info`: (0, "sent").
fn ds_index(line: &str) -> Option<(usize, String)> {
    let (name, index) = line.strip_prefix("ds[")?.split_once("].index = ")?;
    Some((index.trim().parse().ok()?, name.to_string()))
}

/// The consolidated row an archive is filling (see `Rrd::filling_row`).
#[derive(Debug, Default)]
struct FillingRow {
    last_update: i64,
    sums: BTreeMap<String, f64>,
}

#[derive(Debug, Clone)]
pub struct Rrd {
    dir: PathBuf,
    program: PathBuf,
}

impl Rrd {
    pub fn new(dir: &Path) -> Self {
        Rrd {
            dir: dir.to_path_buf(),
            program: std::env::var_os("MODOBOX_RRDTOOL")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("rrdtool")),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.rrd"))
    }

    pub(crate) fn tool(&self, args: &[String]) -> Result<String, StatsError> {
        let out = Cmd::new(&self.program.display().to_string())
            .args(args.iter().cloned())
            .output()
            .map_err(|e| StatsError::Rrdtool {
                command: args.first().cloned().unwrap_or_default(),
                message: format!("cannot run {}: {e}", self.program.display()),
            })?;
        if !out.success {
            return Err(StatsError::Rrdtool {
                command: args.first().cloned().unwrap_or_default(),
                message: out.stderr.trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    /// `rrdtool create` with modoboa-stats' layout, starting just before `start` (seconds).
    pub fn create(&self, name: &str, start: i64) -> Result<(), StatsError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| StatsError::io(&self.dir, e))?;
        let mut args = vec![
            "create".to_string(),
            self.path(name).display().to_string(),
            "--start".into(),
            start.to_string(),
            "--step".into(),
            STEP.to_string(),
        ];
        for c in COUNTERS {
            args.push(format!("DS:{c}:ABSOLUTE:{}:0:U", STEP * 2));
        }
        for cf in ["AVERAGE", "MAX"] {
            for steps in ARCHIVES {
                args.push(format!("RRA:{cf}:0.5:{steps}:{ROWS}"));
            }
        }
        self.tool(&args).map(|_| ())
    }

    /// The time of the last update (seconds).
    pub fn last(&self, name: &str) -> Result<i64, StatsError> {
        let out = self.tool(&["last".into(), self.path(name).display().to_string()])?;
        out.trim().parse().map_err(|_| StatsError::Rrdtool {
            command: "last".into(),
            message: format!("unexpected output {:?}", out.trim()),
        })
    }

    /// The data sources the file has, in its order.
    pub fn data_sources(&self, name: &str) -> Result<Vec<String>, StatsError> {
        let out = self.tool(&["info".into(), self.path(name).display().to_string()])?;
        let mut ds: Vec<(usize, String)> = Vec::new();
        for line in out.lines() {
            ds.extend(ds_index(line));
        }
        ds.sort();
        Ok(ds.into_iter().map(|(_, n)| n).collect())
    }

    /// Writes per-minute counters up to (not including) minute `cut`: one update per minute
    /// since the file's last update, zeros for quiet minutes, so an ABSOLUTE rate is always
    /// count/60 s. Creates missing files; returns (files updated, minutes written).
    pub fn write(
        &self,
        rows: &[(i64, String, Counters)],
        names: &[String],
        cut: i64,
    ) -> Result<(usize, usize), StatsError> {
        let mut per: BTreeMap<&str, BTreeMap<i64, Counters>> = BTreeMap::new();
        for (m, n, c) in rows {
            per.entry(n.as_str())
                .or_default()
                .entry(*m)
                .or_default()
                .add(c);
        }
        // Files already there keep getting zeros when quiet.
        for n in names {
            if !per.contains_key(n.as_str()) && self.path(n).exists() {
                per.insert(n.as_str(), BTreeMap::new());
            }
        }
        let (mut files, mut minutes) = (0, 0);
        for (name, data) in per {
            let first_data = data.keys().next().copied();
            let path = self.path(name);
            if !path.exists() {
                let Some(first) = first_data else { continue };
                // Start on a row boundary of the longest archive and fill zeros from there:
                // a row whose minutes are mostly unknown (xff 0.5) would hide the first data.
                let row = ARCHIVES[3] as i64 * STEP;
                self.create(name, (first * STEP - STEP).div_euclid(row) * row)?;
            }
            let last = self.last(name)?;
            // The update at (m+1)*60 carries minute m; minutes before the last update are in
            // the file already (a retry after a partial failure): the parser's floor moves late
            // lines forward, never before it.
            let from = last / STEP;
            if from >= cut {
                continue;
            }
            let ds = self.data_sources(name)?;
            let idx: HashMap<&str, usize> =
                COUNTERS.iter().enumerate().map(|(i, c)| (*c, i)).collect();
            let cols: Vec<usize> = ds
                .iter()
                .filter_map(|d| idx.get(d.as_str()).copied())
                .collect();
            let template: Vec<&str> = cols.iter().map(|i| COUNTERS[*i]).collect();
            let row = |m: i64, c: &Counters| {
                let mut u = ((m + 1) * STEP).to_string();
                for i in &cols {
                    u.push(':');
                    u.push_str(&c.0[*i].to_string());
                }
                u
            };
            // Quiet minutes are zeros (a rate is count/60 s). A gap longer than MAX_FILL is
            // left unknown, except the longest archive row before the next data (so that row
            // is mostly known under xff 0.5 and its data shows).
            let zero = Counters::default();
            let mut updates = Vec::new();
            let mut prev = from - 1;
            let fill = |updates: &mut Vec<String>, prev: i64, next: i64| {
                let start = if next - prev - 1 <= MAX_FILL_MINUTES {
                    prev + 1
                } else {
                    next - ARCHIVES[3] as i64
                };
                for z in start..next {
                    updates.push(row(z, &zero));
                }
            };
            for (m, c) in data.range(from..cut) {
                fill(&mut updates, prev, *m);
                updates.push(row(*m, c));
                prev = *m;
            }
            fill(&mut updates, prev, cut);
            for chunk in updates.chunks(BATCH) {
                let mut args = vec![
                    "update".to_string(),
                    path.display().to_string(),
                    "--template".into(),
                    template.join(":"),
                ];
                args.extend(chunk.iter().cloned());
                self.tool(&args)?;
            }
            files += 1;
            minutes += updates.len();
        }
        Ok((files, minutes))
    }

    /// The AVERAGE row of `row_step` seconds being filled: the file's last update and, per
    /// data source, the sum of the per-minute rates written into that row so far (what rrdtool
    /// keeps as the row's consolidation in progress).
    fn filling_row(&self, name: &str, row_step: i64) -> Result<FillingRow, StatsError> {
        let out = self.tool(&["info".into(), self.path(name).display().to_string()])?;
        let mut last_update = 0;
        let mut ds_names: BTreeMap<usize, String> = BTreeMap::new();
        let mut rra_cf: HashMap<usize, String> = HashMap::new();
        let mut rra_steps: HashMap<usize, i64> = HashMap::new();
        let mut values: Vec<(usize, usize, f64)> = Vec::new();
        for line in out.lines() {
            let Some((key, value)) = line.split_once(" = ") else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            if key == "last_update" {
                last_update = value.parse().unwrap_or(0);
            } else if let Some((i, ds)) = ds_index(line) {
                ds_names.insert(i, ds);
            } else if let Some(rest) = key.strip_prefix("rra[") {
                let Some((i, field)) = rest.split_once("].") else {
                    continue;
                };
                let Ok(i) = i.parse::<usize>() else { continue };
                if field == "cf" {
                    rra_cf.insert(i, value.to_string());
                } else if field == "pdp_per_row" {
                    rra_steps.insert(i, value.parse::<i64>().unwrap_or(0) * STEP);
                } else if let Some(prep) = field.strip_prefix("cdp_prep[") {
                    if let Some((d, "value")) = prep.split_once("].") {
                        if let (Ok(d), Ok(v)) = (d.parse(), value.parse::<f64>()) {
                            values.push((i, d, v));
                        }
                    }
                }
            }
        }
        let rra = rra_cf
            .iter()
            .find(|(i, cf)| *cf == "AVERAGE" && rra_steps.get(*i) == Some(&row_step))
            .map(|(i, _)| *i);
        let mut sums = BTreeMap::new();
        for (i, d, v) in values {
            if Some(i) == rra && v.is_finite() {
                if let Some(ds) = ds_names.get(&d) {
                    sums.insert(ds.clone(), v);
                }
            }
        }
        Ok(FillingRow { last_update, sums })
    }

    /// Totals per counter between two times (seconds): Σ rate × step over the archive rrdtool
    /// picks for the range.
    pub fn totals(
        &self,
        name: &str,
        start: i64,
        end: i64,
    ) -> Result<BTreeMap<String, f64>, StatsError> {
        let path = self.path(name);
        if !path.exists() {
            return Err(StatsError::NoData {
                name: name.to_string(),
                path: path.display().to_string(),
            });
        }
        let out = self.tool(&[
            "fetch".into(),
            path.display().to_string(),
            "AVERAGE".into(),
            "--start".into(),
            start.to_string(),
            "--end".into(),
            end.to_string(),
        ])?;
        let mut lines = out.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut rows: Vec<(i64, Vec<f64>)> = Vec::new();
        for l in lines {
            let Some((t, vals)) = l.split_once(':') else {
                continue;
            };
            let Ok(t) = t.trim().parse::<i64>() else {
                continue;
            };
            let v = vals
                .split_whitespace()
                .map(|x| {
                    x.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .unwrap_or(0.0)
                })
                .collect();
            rows.push((t, v));
        }
        let step = rows
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .next()
            .unwrap_or(STEP) as f64;
        let mut totals: BTreeMap<String, f64> = header.iter().map(|h| (h.clone(), 0.0)).collect();
        for (_, v) in &rows {
            for (h, x) in header.iter().zip(v) {
                *totals.entry(h.clone()).or_default() += x * step;
            }
        }
        // The row still being filled is unknown to `fetch` until its last minute is written
        // (8 minutes for the day's archive): its minutes so far come from `rrdtool info`.
        let filling = self.filling_row(name, step as i64)?;
        if filling.last_update > start && filling.last_update <= end {
            for (ds, sum) in filling.sums {
                if let Some(t) = totals.get_mut(&ds) {
                    *t += sum * STEP as f64;
                }
            }
        }
        // Rates × steps give back whole counts up to floating-point noise.
        for v in totals.values_mut() {
            *v = v.round();
        }
        Ok(totals)
    }
}
