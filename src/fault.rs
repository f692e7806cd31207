//! Named fault points, so that tests can make failures happen where they matter (a crash after
//! the database dump, a migration failing half-way). They exist only with the `fault-injection`
//! cargo feature, which only tests enable; without it `point` is an empty inline function.
//!
//! With the feature, `MODOBOX_FAULT=<point>[:<action>][,<point>[:<action>]...]` arms points:
//! `error` (the default) makes the step fail, `kill` ends the process with SIGKILL (a crash:
//! no destructor, no cleanup), `stop` stops it with SIGSTOP until the test continues or kills
//! it (the process is then known to be exactly there, holding what it holds).

use std::fmt::Display;

// Armed points in an optimised build would leave a crash one environment variable away.
#[cfg(all(feature = "fault-injection", not(debug_assertions)))]
compile_error!("the fault-injection feature is for test builds only, not optimised ones");

/// The error an armed `error` point returns.
#[derive(Debug, thiserror::Error)]
#[error("fault injected at {0} (MODOBOX_FAULT)")]
pub struct Injected(pub String);

/// The environment variable naming the armed points.
pub const ENV: &str = "MODOBOX_FAULT";

/// A fault point: does what `MODOBOX_FAULT` asks for `name`, else nothing.
#[cfg(feature = "fault-injection")]
pub fn point(name: impl Display) -> Result<(), Injected> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let Some(spec) = IN_THIS_THREAD
        .with(|armed| armed.borrow().clone())
        .or_else(|| std::env::var(ENV).ok())
    else {
        return Ok(());
    };
    let name = name.to_string();
    for entry in spec.split(',') {
        let (armed, action) = entry.split_once(':').unwrap_or((entry, "error"));
        if armed.trim() != name {
            continue;
        }
        match action.trim() {
            "error" => return Err(Injected(name)),
            "kill" => {
                let _ = kill(Pid::this(), Signal::SIGKILL);
                // SIGKILL cannot be caught: this line is never reached.
                std::process::abort();
            }
            "stop" => {
                let _ = kill(Pid::this(), Signal::SIGSTOP);
            }
            other => {
                return Err(Injected(format!(
                    "{name} (unknown action {other:?}: error, kill or stop)"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(feature = "fault-injection")]
thread_local! {
    static IN_THIS_THREAD: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `work` with the points of `spec` (as in `MODOBOX_FAULT`) armed in this thread only, in
/// place of the variable: a test calling library code in-process (on a current-thread runtime)
/// makes a failure happen without touching the other tests of its binary.
#[cfg(feature = "fault-injection")]
pub fn armed_in_this_thread<T>(spec: &str, work: impl FnOnce() -> T) -> T {
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            IN_THIS_THREAD.with(|armed| *armed.borrow_mut() = None);
        }
    }
    IN_THIS_THREAD.with(|armed| *armed.borrow_mut() = Some(spec.to_string()));
    let _disarm = Disarm;
    work()
}

/// A fault point: compiled without the `fault-injection` feature, it does nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: impl Display) -> Result<(), Injected> {
    Ok(())
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;

    // One test touches the variable: tests of a binary run in parallel threads.
    #[test]
    fn armed_points_fail_and_others_pass() {
        std::env::set_var(ENV, "a.b, c.d:error,e:bogus");
        assert!(point("x").is_ok());
        assert_eq!(
            point(format_args!("a.{}", "b")).unwrap_err().to_string(),
            "fault injected at a.b (MODOBOX_FAULT)"
        );
        assert!(point("c.d").is_err());
        assert!(point("e")
            .unwrap_err()
            .to_string()
            .contains("unknown action"));
        std::env::remove_var(ENV);
        assert!(point("a.b").is_ok());
        assert!(armed_in_this_thread("a.b", || point("a.b")).is_err());
        assert!(point("a.b").is_ok(), "disarmed when the work ends");
    }
}
