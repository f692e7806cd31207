//! Graphs drawn by `rrdtool graph` from the RRD files: the traffic set (messages per minute)
//! and the size set (bytes per minute), for a day, week, month, year or a custom range, as
//! SVG or PNG (the web UI embeds either).

use std::path::Path;

use super::rrd::Rrd;
use super::StatsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
    Year,
    /// Needs --start and --end.
    Custom,
}

impl Period {
    pub fn seconds(self) -> Option<i64> {
        match self {
            Period::Day => Some(86_400),
            Period::Week => Some(7 * 86_400),
            Period::Month => Some(30 * 86_400),
            Period::Year => Some(365 * 86_400),
            Period::Custom => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Messages per minute: sent, received, bounced, rejected, spam, virus, greylisted.
    Traffic,
    /// Bytes per minute: sent and received.
    Size,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// From the output file's extension.
    pub fn from_path(path: &Path) -> Result<Format, StatsError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => Err(StatsError::Invalid {
                field: "--out".into(),
                rule: "must end in .svg or .png".into(),
            }),
        }
    }
}

const TRAFFIC: [(&str, &str, &str); 7] = [
    ("sent", "sent", "#1f77b4"),
    ("recv", "received", "#2ca02c"),
    ("bounced", "bounced", "#ff7f0e"),
    ("reject", "rejected", "#d62728"),
    ("spam", "spam", "#9467bd"),
    ("virus", "virus", "#8c564b"),
    ("greylist", "greylisted", "#7f7f7f"),
];
const SIZE: [(&str, &str, &str); 2] = [
    ("size_sent", "bytes sent", "#1f77b4"),
    ("size_recv", "bytes received", "#2ca02c"),
];

/// Draws `name`'s graph over [start, end] (seconds) into `out`.
pub fn draw(
    rrd: &Rrd,
    name: &str,
    kind: Kind,
    start: i64,
    end: i64,
    out: &Path,
) -> Result<(), StatsError> {
    let path = rrd.path(name);
    if !path.exists() {
        return Err(StatsError::NoData {
            name: name.to_string(),
            path: path.display().to_string(),
        });
    }
    if end <= start {
        return Err(StatsError::Invalid {
            field: "--end".into(),
            rule: "must be after --start".into(),
        });
    }
    let format = Format::from_path(out)?;
    let have = rrd.data_sources(name)?;
    let (title, unit, series): (&str, &str, &[(&str, &str, &str)]) = match kind {
        Kind::Traffic => ("traffic", "msgs/min", &TRAFFIC),
        Kind::Size => ("traffic size", "bytes/min", &SIZE),
    };
    // rrdtool reads DEF paths after ':' — escape the colons a path may hold.
    let file = path.display().to_string().replace(':', "\\:");
    let mut args = vec![
        "graph".to_string(),
        out.display().to_string(),
        "--imgformat".into(),
        match format {
            Format::Svg => "SVG".into(),
            Format::Png => "PNG".into(),
        },
        "--start".into(),
        start.to_string(),
        "--end".into(),
        end.to_string(),
        "--title".into(),
        format!("{name}: {title}"),
        "--vertical-label".into(),
        unit.into(),
        "--lower-limit".into(),
        "0".into(),
        "--width".into(),
        "540".into(),
        "--height".into(),
        "160".into(),
    ];
    for (ds, label, color) in series {
        if !have.iter().any(|h| h == ds) {
            continue; // an old modoboa-stats file without greylist
        }
        args.push(format!("DEF:{ds}={file}:{ds}:AVERAGE"));
        // ABSOLUTE stores per-second rates: per minute for the reader.
        args.push(format!("CDEF:{ds}_m={ds},60,*"));
        args.push(format!("LINE1:{ds}_m{color}:{label:<15}"));
        args.push(format!("GPRINT:{ds}_m:AVERAGE:avg %6.2lf"));
        args.push(format!("GPRINT:{ds}_m:MAX:max %6.2lf\\l"));
    }
    rrd.tool(&args).map(|_| ())
}
