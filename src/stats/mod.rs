//! Mail statistics (modoboa-stats compatible): an incremental mail-log parser, the RRD files it
//! feeds and the graphs drawn from them. `run` is what the scheduler calls every 5 minutes.

pub mod parser;
