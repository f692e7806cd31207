//! `service::systemd` against a real systemd. The host has no systemd as PID 1, so `outer` boots a
//! throw-away Debian bookworm with the e2e harness (tests/e2e/harness), copies this very test
//! executable into it and runs `inner` there (MODOBOX_SYSTEMD_INNER=1), which drives probe units
//! over D-Bus. Needs root, debootstrap, slirp4netns and the Debian archive (once a week, for the
//! cached root); without them the test is skipped, unless CI is set, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use modobox::service::systemd::Systemd;
use modobox::service::ServiceError;

const INNER: &str = "MODOBOX_SYSTEMD_INNER";
const INNER_EXE: &str = "/usr/local/bin/systemd-dbus-test";

fn harness(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/harness")
        .join(script)
}

/// A skip, or a failure when CI is set.
fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "systemd D-Bus test cannot run while CI is set: {why}"
    );
    eprintln!("skipping the systemd D-Bus test: {why}");
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .any(|d| d.join(tool).is_file())
    })
}

fn show(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Tears the container down and deletes its root, whatever happened.
struct Container {
    root: PathBuf,
    name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let out = Command::new(harness("teardown"))
            .arg("--rm")
            .arg(&self.root)
            .arg(&self.name)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("{}", show("teardown", &o)),
            Err(e) => eprintln!("teardown {}: {e}", self.name),
        }
    }
}

#[test]
fn outer() {
    if std::env::var_os(INNER).is_some() {
        return;
    }
    let t0 = Instant::now();
    if uzers::get_effective_uid() != 0 {
        return skip("not root");
    }
    let missing: Vec<_> = [
        "debootstrap",
        "slirp4netns",
        "unshare",
        "nsenter",
        "ip",
        "flock",
    ]
    .into_iter()
    .filter(|t| !on_path(t))
    .collect();
    if !missing.is_empty() {
        return skip(&format!(
            "missing {missing:?} (run tests/setup-host and apt-get install slirp4netns)"
        ));
    }
    if !Path::new("/dev/net/tun").exists() {
        return skip("no /dev/net/tun");
    }

    let work = tempfile::Builder::new()
        .prefix("mbx-systemd.")
        .tempdir_in("/var/tmp")
        .expect("a work directory in /var/tmp");
    let root = work.path().join("root");
    let name = format!("mbx-sd-{}", std::process::id());

    let mk = Command::new(harness("mkroot"))
        .arg("bookworm")
        .arg(&root)
        .output()
        .expect("run mkroot");
    if !mk.status.success() {
        // Also removes whatever mkroot left behind.
        let _ = std::fs::remove_dir_all(&root);
        return skip(&show("mkroot bookworm", &mk));
    }
    let t_root = t0.elapsed();
    let container = Container {
        root: root.clone(),
        name: name.clone(),
    };
    let exe = std::env::current_exe().expect("the test executable");
    std::fs::copy(&exe, root.join(INNER_EXE.trim_start_matches('/')))
        .expect("copy the test executable into the root");

    let boot = Command::new(harness("boot"))
        .arg(&root)
        .arg(&name)
        .output()
        .expect("run boot");
    if !boot.status.success() {
        return skip(&show("boot", &boot));
    }
    let t_boot = t0.elapsed();

    let run = |test: &str, env: &[&str]| {
        let out = Command::new(harness("run-in"))
            .arg(&name)
            .arg(format!("{INNER}=1"))
            .args(env)
            .args([
                INNER_EXE,
                "--exact",
                test,
                "--nocapture",
                "--test-threads=1",
            ])
            .output()
            .expect("run-in");
        let text = show(&format!("inner test {test}"), &out);
        eprintln!("{text}");
        assert!(out.status.success(), "{text}");
        // Make sure the test really ran inside rather than being filtered out.
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{text}"
        );
    };
    run("inner", &[]);
    run(
        "inner_no_bus",
        &["DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/mbx-no-such-bus"],
    );
    let t_inner = t0.elapsed();
    drop(container);
    eprintln!(
        "systemd D-Bus test: root {:.1} s, boot {:.1} s, inner tests {:.1} s, teardown {:.1} s",
        t_root.as_secs_f64(),
        (t_boot - t_root).as_secs_f64(),
        (t_inner - t_boot).as_secs_f64(),
        (t0.elapsed() - t_inner).as_secs_f64()
    );
}

const PROBE: &str = "[Unit]
Description=modobox test probe

[Service]
ExecStart=/bin/sleep infinity
ExecReload=/bin/true

[Install]
WantedBy=multi-user.target
";

const FAILING: &str = "[Unit]
Description=modobox test unit that fails

[Service]
Type=oneshot
ExecStart=/bin/false
";

const SLOW: &str = "[Unit]
Description=modobox test unit that starts slowly

[Service]
Type=oneshot
ExecStart=/bin/sleep 5
";

fn inside(value: &str) -> bool {
    std::env::var(INNER).as_deref() == Ok(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner() {
    if !inside("1") {
        return;
    }
    for (unit, text) in [
        ("mbx-probe.service", PROBE),
        ("mbx-fail.service", FAILING),
        ("mbx-slow.service", SLOW),
    ] {
        std::fs::write(Path::new("/etc/systemd/system").join(unit), text).unwrap();
    }
    let sd = Systemd::connect().await.unwrap();
    sd.daemon_reload().await.unwrap();

    // enable
    assert_eq!(sd.is_enabled("mbx-probe").await.unwrap(), "disabled");
    assert!(sd.enable(&["mbx-probe"]).await.unwrap(), "first enable");
    assert!(
        !sd.enable(&["mbx-probe.service"]).await.unwrap(),
        "second enable"
    );
    assert_eq!(sd.is_enabled("mbx-probe").await.unwrap(), "enabled");
    assert!(Path::new("/etc/systemd/system/multi-user.target.wants/mbx-probe.service").exists());
    assert_eq!(sd.is_enabled("mbx-fail").await.unwrap(), "static");
    assert!(
        !sd.enable(&["mbx-fail"]).await.unwrap(),
        "nothing to enable"
    );

    let st = sd.status("mbx-probe").await.unwrap();
    assert_eq!(
        (st.load.as_str(), st.active.as_str(), st.sub.as_str()),
        ("loaded", "inactive", "dead"),
        "{st:?}"
    );
    assert_eq!(st.unit_file, "enabled");
    assert_eq!((st.main_pid, st.since), (0, None), "{st:?}");

    // start, restart, reload, try-restart, reload-or-restart, stop
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    sd.start("mbx-probe").await.unwrap();
    let st = sd.status("mbx-probe").await.unwrap();
    assert_eq!(
        (st.active.as_str(), st.sub.as_str()),
        ("active", "running"),
        "{st:?}"
    );
    assert!(st.is_active());
    assert!(st.main_pid > 0, "{st:?}");
    assert!(st.since.is_some_and(|t| t >= before), "{st:?}");
    assert_eq!(st.restarts, 0);
    let pid1 = st.main_pid;

    sd.restart("mbx-probe").await.unwrap();
    let pid2 = sd.status("mbx-probe").await.unwrap().main_pid;
    assert!(pid2 > 0 && pid2 != pid1, "restart: {pid1} -> {pid2}");

    sd.reload("mbx-probe").await.unwrap();
    let st = sd.status("mbx-probe").await.unwrap();
    assert_eq!(
        (st.active.as_str(), st.main_pid),
        ("active", pid2),
        "{st:?}"
    );

    sd.reload_or_restart("mbx-probe").await.unwrap();
    assert_eq!(
        sd.status("mbx-probe").await.unwrap().main_pid,
        pid2,
        "reloaded, not restarted"
    );

    sd.try_restart("mbx-probe").await.unwrap();
    let pid3 = sd.status("mbx-probe").await.unwrap().main_pid;
    assert!(pid3 > 0 && pid3 != pid2, "try-restart: {pid2} -> {pid3}");

    sd.stop("mbx-probe").await.unwrap();
    let st = sd.status("mbx-probe").await.unwrap();
    assert_eq!(
        (st.active.as_str(), st.sub.as_str(), st.main_pid),
        ("inactive", "dead", 0),
        "{st:?}"
    );
    sd.try_restart("mbx-probe").await.unwrap();
    assert_eq!(
        sd.status("mbx-probe").await.unwrap().active,
        "inactive",
        "try-restart of a stopped unit"
    );
    let err = sd.reload("mbx-probe").await.unwrap_err().to_string();
    assert!(err.starts_with("reload mbx-probe.service: "), "{err}");

    // a failing unit
    let err = sd.start("mbx-fail").await.unwrap_err();
    assert!(matches!(err, ServiceError::JobFailed { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        r#"start mbx-fail.service: job failed (result "failed")"#
    );
    let st = sd.status("mbx-fail").await.unwrap();
    assert_eq!(
        (st.active.as_str(), st.unit_file.as_str()),
        ("failed", "static"),
        "{st:?}"
    );
    sd.reset_failed("mbx-fail").await.unwrap();
    assert_eq!(sd.status("mbx-fail").await.unwrap().active, "inactive");

    // refused names, missing units
    let err = sd.start("../etc/passwd").await.unwrap_err();
    assert!(matches!(err, ServiceError::InvalidName { .. }), "{err:?}");
    assert!(err.to_string().contains("ASCII letters, digits"), "{err}");
    assert!(sd.enable(&["ok", "bad name"]).await.is_err());

    let err = sd.start("mbx-missing").await.unwrap_err();
    assert!(matches!(err, ServiceError::NoSuchUnit { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("start mbx-missing.service: no such unit"),
        "{msg}"
    );
    let err = sd.is_enabled("mbx-missing").await.unwrap_err();
    assert!(matches!(err, ServiceError::NoSuchUnit { .. }), "{err:?}");
    let err = sd.enable(&["mbx-missing"]).await.unwrap_err().to_string();
    assert!(err.starts_with("enable mbx-missing.service: "), "{err}");
    assert_eq!(sd.status("mbx-missing").await.unwrap().load, "not-found");
    sd.reset_failed("mbx-missing").await.unwrap();

    // the time limit
    let quick = sd.clone().with_timeout(Duration::from_secs(1));
    let err = quick.start("mbx-slow").await.unwrap_err();
    assert!(matches!(err, ServiceError::Timeout { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "start mbx-slow.service: no answer within 1 s"
    );
    // The start job was cancelled by nothing: it still runs, and stopping it kills the oneshot,
    // which systemd counts as a failure (result "signal").
    sd.stop("mbx-slow").await.unwrap();
    assert_eq!(sd.status("mbx-slow").await.unwrap().active, "failed");
    sd.reset_failed("mbx-slow").await.unwrap();
    assert_eq!(sd.status("mbx-slow").await.unwrap().active, "inactive");
}

#[tokio::test]
async fn inner_no_bus() {
    if !inside("1") || std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_none() {
        return;
    }
    let err = Systemd::connect().await.unwrap_err();
    assert!(matches!(err, ServiceError::NoSystemBus { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("cannot connect to the D-Bus system bus"),
        "{err}"
    );
}
