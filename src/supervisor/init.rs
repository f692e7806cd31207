//! `modobox run` as PID 1 of a container or appliance image without systemd. PID 1 inherits
//! every orphaned process and must reap it, and gets no default signal actions; the real work
//! runs in a child (the same command), and this process only forwards signals to it, reaps
//! whatever exits, and when the child is gone ends what is left.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Set in the child's environment so it does not become an init in turn.
const CHILD_ENV: &str = "MODOBOX_INIT_CHILD";

/// This process is PID 1 and not already the init's child.
pub fn needed() -> bool {
    nix::unistd::getpid().as_raw() == 1 && std::env::var_os(CHILD_ENV).is_none()
}

/// In the child: the init blocked the signals it waits for, and a blocked mask survives exec;
/// modobox and the daemons it starts must see them. Called before any thread exists.
pub fn unblock_inherited_signals() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let _ = SigSet::empty().thread_set_mask();
    }
}

/// This process is the init's child (or the init itself).
pub fn is_init() -> bool {
    nix::unistd::getpid().as_raw() == 1 || std::env::var_os(CHILD_ENV).is_some()
}

/// Runs the same command line as a child, until it exits; its exit code is ours.
pub fn run() -> ExitCode {
    let forwarded = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ];
    let mut set = SigSet::empty();
    for s in forwarded.iter().chain([&Signal::SIGCHLD]) {
        set.add(*s);
    }
    // Blocked here and received with sigwait; the child unblocks them (see below).
    if let Err(e) = set.thread_block() {
        eprintln!("modobox init: blocking signals: {e}");
        return ExitCode::from(2);
    }
    let mut args = std::env::args_os();
    let program = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let child = match std::process::Command::new(program)
        .args(args.by_ref().skip(1))
        .env(CHILD_ENV, "1")
        .spawn()
    {
        Ok(c) => Pid::from_raw(c.id() as i32),
        Err(e) => {
            eprintln!("modobox init: cannot start the supervisor: {e}");
            return ExitCode::from(2);
        }
    };
    let mut code = None;
    while code.is_none() {
        match set.wait() {
            Ok(Signal::SIGCHLD) => code = reap(child),
            Ok(sig) => {
                let _ = kill(child, sig);
            }
            Err(_) => {}
        }
    }
    let left = end_the_rest();
    if left > 0 {
        eprintln!("modobox init: ended {left} process(es) left behind by the supervisor");
    }
    ExitCode::from(code.unwrap_or(2))
}

/// Reaps every exited process; the child's exit code when it is one of them.
fn reap(child: Pid) -> Option<u8> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, c)) if pid == child => code = Some(c as u8),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => code = Some(128 + sig as u8),
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => {}
        }
    }
}

/// SIGTERM to every process left in the namespace, SIGKILL after 5 s; how many there were.
fn end_the_rest() -> usize {
    let everyone = Pid::from_raw(-1);
    let mut count = 0;
    if kill(everyone, Signal::SIGTERM).is_err() {
        return 0; // nobody left
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() > deadline {
                    let _ = kill(everyone, Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(_) => count += 1,
            Err(_) => return count, // ECHILD: no children left
        }
    }
}
