//! What the resident supervisor (`modobox run`) looks at: protocol-level probes of every
//! daemon (`probes`, async, each with its own timeout) and checks of the host's state
//! (`checks`: certificate expiry, free space, Postfix's queue, hand edits of rendered files).

pub mod canary;
pub mod checks;
pub mod probes;
pub mod published;

pub use checks::{Check, Level};
pub use probes::{ProbeError, ProbeOk, DEFAULT_TIMEOUT};
