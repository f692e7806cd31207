//! Parser throughput on one log file (tests/stats/bench runs it on ≥ 1 GB): reads the file
//! once in 1 MB chunks through the statistics parser and prints MB/s and the totals.
//! usage: stats_bench FILE DOMAIN...

use std::time::Instant;

use modobox::stats::parser::{Domains, Parser, Zone, COUNTERS};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        eprintln!("usage: stats_bench FILE DOMAIN...");
        std::process::exit(2);
    };
    let names: Vec<String> = args.collect();
    let mut parser = Parser::new(Domains::new(&names), Zone::Fixed(0), chrono::Utc::now());
    let started = Instant::now();
    let mut f = std::fs::File::open(&file)?;
    let bytes = modobox::stats::source::feed_stream(&mut f, 0, &mut parser, true)?;
    parser.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "modobox: {} bytes, {} lines in {secs:.2} s = {:.0} MB/s ({} skipped, {} in flight)",
        bytes,
        parser.input.lines,
        bytes as f64 / secs / 1e6,
        parser.input.skipped,
        parser.in_flight()
    );
    for (name, c) in parser.totals() {
        let fields: Vec<String> = COUNTERS
            .iter()
            .zip(c.0)
            .filter(|(_, v)| *v > 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        println!("  {name}: {}", fields.join(" "));
    }
    Ok(())
}
