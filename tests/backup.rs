//! Backups as an admin runs them: the real binary, a real restic repository, real PostgreSQL,
//! MariaDB and SQLite databases (dumped with pg_dump / mariadb-dump / VACUUM INTO), a Maildir
//! with folders. Each engine: create, list, show, verify; then lose a mailbox and a domain and
//! get them back; one mailbox into a Restored folder; and the failures a backup must name:
//! a missing DKIM key, a flipped byte in the repository, a wrong password, an unreachable
//! repository.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use modobox::store::Backend;
use serde_json::Value;
use sha2::{Digest, Sha256};

struct Server {
    dir: tempfile::TempDir,
    config: PathBuf,
    db: common::TestDb,
}

impl Server {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The binary on this server's configuration, in a process group of its own (so that a
    /// test can kill it with the programs it runs), `MODOBOX_FAULT` set when `fault` is.
    fn start(&self, args: &[&str], fault: Option<&str>) -> Child {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_modobox"));
        command
            .args(args)
            .env("MODOBOX_CONFIG", &self.config)
            .env_remove("MODOBOX_DATABASE_URL")
            .env_remove("MODOBOX_FAULT")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(f) = fault {
            command.env("MODOBOX_FAULT", f);
        }
        let mut child = command.spawn().unwrap();
        child.stdin.take().unwrap().write_all(b"").unwrap();
        child
    }

    fn run(&self, args: &[&str]) -> Output {
        self.start(args, None).wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ok(&all);
        // Commands may print progress lines before the JSON document.
        let start = text.find(['{', '[']).unwrap();
        serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// A configuration whose every path is in a temporary directory, on `db`.
fn server(db: common::TestDb) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let p = |rel: &str| dir.path().join(rel).display().to_string();
    let database = match db.backend {
        Backend::Sqlite => format!("engine = \"sqlite\"\nsqlite_path = \"{}\"\n", db.name),
        _ => {
            let url = url::Url::parse(&db.raw_url).unwrap();
            format!(
                "engine = \"{}\"\nlocation = \"external\"\nhost = \"127.0.0.1\"\nport = {}\nname = \"{}\"\nuser = \"{}\"\n",
                if db.backend == Backend::Postgres { "postgres" } else { "mysql" },
                url.port().unwrap(),
                db.name,
                url.username()
            )
        }
    };
    let password = url::Url::parse(&db.raw_url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .unwrap_or_default();
    std::fs::create_dir_all(dir.path().join("tls")).unwrap();
    let (cert, key) = (p("tls/cert.pem"), p("tls/key.pem"));
    let openssl = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        ])
        .args([
            "-subj",
            "/CN=mail.example.test",
            "-keyout",
            &key,
            "-out",
            &cert,
        ])
        .output()
        .unwrap();
    assert!(openssl.status.success());
    let config = dir.path().join("modobox.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"mail.example.test\"\n[database]\n{database}\n\
             [paths]\nmail_root = \"{}\"\ndkim_keys = \"{}\"\nrrd = \"{}\"\ndata = \"{}\"\nsecrets = \"{}\"\n\
             [tls]\nmode = \"manual\"\ncert = \"{cert}\"\nkey = \"{key}\"\n\
             [backup]\nrepository = \"{}\"\n",
            p("vmail"),
            p("dkim"),
            p("rrd"),
            p("data"),
            p("secrets.toml"),
            p("repo")
        ),
    )
    .unwrap();
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(&secrets, format!("database_password = \"{password}\"\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    Server { dir, config, db }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Every message file under a home, by path relative to it, with its SHA-256.
fn messages(home: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for rel in modobox::backup::maildir::message_files(home).unwrap() {
        let bytes = std::fs::read(home.join(&rel)).unwrap();
        out.insert(
            rel.display().to_string(),
            format!("{:x}", Sha256::digest(&bytes)),
        );
    }
    out
}

/// Every file below `dir` (not the directories).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().filter_map(Result::ok) {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn populate(s: &Server) {
    s.ok(&["db", "migrate"]);
    s.ok(&["domain", "add", "example.test", "--dkim", "true"]);
    s.ok(&["domain", "add", "gone.test"]);
    s.ok(&[
        "mailbox",
        "add",
        "alice@example.test",
        "--generate-password",
    ]);
    s.ok(&["mailbox", "add", "bob@example.test", "--generate-password"]);
    s.ok(&["alias", "add", "info@gone.test", "alice@example.test"]);
    s.ok(&["task", "run", "dkim_keys"]);
    let home = s.path("vmail/example.test/alice");
    write(
        &home.join("Maildir/cur/1001.M1P1.mail:2,S"),
        "Subject: one\n\nfirst\n",
    );
    write(
        &home.join("Maildir/new/1002.M2P1.mail"),
        "Subject: two\n\nsecond\n",
    );
    write(
        &home.join("Maildir/.Sent/cur/1003.M3P1.mail:2,S"),
        "Subject: three\n\nsent\n",
    );
    write(&home.join("Maildir/.Sent/maildirfolder"), "");
    write(
        &home.join("Maildir/dovecot-uidlist"),
        "3 V1 N4\n1 1001.M1P1.mail\n",
    );
    write(&home.join("Maildir/dovecot.index.cache"), "cache");
    write(&home.join("sieve/out.sieve"), "require \"vacation\";\n");
    std::fs::create_dir_all(home.join("Maildir/tmp")).unwrap();
}

fn scenario(s: &Server) {
    populate(s);
    let home = s.path("vmail/example.test/alice");
    let before = messages(&home);
    assert_eq!(before.len(), 3);

    // create / list / show
    let created = s.json(&["backup", "create"]);
    assert_eq!(created["repository_created"], true);
    assert_eq!(created["domains"], 2);
    assert_eq!(created["mailboxes"], 2);
    assert_eq!(created["messages"], 3);
    assert!(s.path("repo/config").is_file(), "a local repository");
    // The snapshot stays for the next run, root only; the scratch area goes.
    let snapshot = s.path("vmail/.modobox-backup/snapshot");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&snapshot).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(!s.path("vmail/.modobox-backup/scratch").exists());
    let list = s.json(&["backup", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let shown = s.json(&["backup", "show", "latest"]);
    assert_eq!(shown["domains"]["example.test"]["mailboxes"], 2);
    assert_eq!(shown["domains"]["gone.test"]["aliases"], 1);
    assert_eq!(shown["mailboxes"]["alice@example.test"]["messages"], 3);
    assert_eq!(shown["mailboxes"]["bob@example.test"]["messages"], 0);
    // A second run stores only what changed.
    let again = s.json(&["backup", "create"]);
    assert_eq!(again["repository_created"], false);
    assert_eq!(again["files_new"], 0, "{again}");

    // Between two runs a message moves to cur/ with a flag, a folder comes and goes, a
    // mailbox is deleted: the kept snapshot follows (the restore below gets exactly `before`).
    let maildir = home.join("Maildir");
    std::fs::rename(
        maildir.join("new/1002.M2P1.mail"),
        maildir.join("cur/1002.M2P1.mail:2,S"),
    )
    .unwrap();
    write(
        &maildir.join(".Trash/cur/1005.M5P1.mail:2,T"),
        "Subject: five\n\n",
    );
    write(&maildir.join(".Trash/maildirfolder"), "");
    let bob = s.path("vmail/example.test/bob/Maildir/cur/1006.M6P1.mail:2,S");
    write(&bob, "Subject: six\n\nbob's\n");
    let moved = s.json(&["backup", "create"]);
    assert_eq!(moved["messages"], 5, "{moved}");
    std::fs::remove_dir_all(maildir.join(".Trash")).unwrap();
    std::fs::remove_dir_all(s.path("vmail/example.test/bob")).unwrap();
    let before = messages(&home);
    let after = s.json(&["backup", "create"]);
    assert_eq!(after["messages"], 3, "{after}");
    assert!(
        !snapshot.join("mail/example.test/bob").exists(),
        "a home that is gone leaves the snapshot"
    );
    let shown = s.json(&["backup", "show", "latest"]);
    assert_eq!(shown["mailboxes"]["alice@example.test"]["messages"], 3);
    assert_eq!(shown["mailboxes"]["bob@example.test"]["messages"], 0);

    // verify: everything restores
    let verified = s.json(&["backup", "verify", "latest", "--read-data", "100%"]);
    assert_eq!(verified["problems"], serde_json::json!([]), "{verified}");
    assert_eq!(verified["database_loaded"], true);
    assert_eq!(verified["dkim_keys_checked"], 1);
    assert_eq!(verified["tls_checked"], true);
    assert_eq!(verified["messages"], 3);

    // Lose alice's mailbox and a domain with its alias; keep a newer message of bob's.
    std::fs::remove_dir_all(&home).unwrap();
    s.ok(&["domain", "del", "gone.test", "--yes"]);
    let bob = s.path("vmail/example.test/bob/Maildir/new/2001.M9P1.mail");
    write(&bob, "Subject: newer\n\nafter the backup\n");
    let out = s.ok(&[
        "backup", "restore", "latest", "--only", "db", "--only", "mail", "--yes",
    ]);
    assert!(
        out.contains("REPLACED"),
        "the plan says what it replaces: {out}"
    );
    assert_eq!(messages(&home), before, "every message back, same content");
    assert!(home.join("Maildir/dovecot-uidlist").is_file(), "UIDs kept");
    assert!(home.join("sieve/out.sieve").is_file());
    assert!(!home.join("Maildir/dovecot.index.cache").exists());
    s.ok(&["domain", "show", "gone.test"]);
    s.ok(&["alias", "show", "info@gone.test"]);
    assert!(bob.is_file(), "newer mail of another mailbox untouched");

    // One mailbox into a Restored folder of the live mailbox; newer mail untouched.
    let newer = home.join("Maildir/new/1004.M4P1.mail");
    write(&newer, "Subject: four\n\nnewer\n");
    s.ok(&[
        "backup",
        "restore",
        "latest",
        "--mailbox",
        "alice@example.test",
        "--into-folder",
        "Restored-test",
        "--yes",
    ]);
    assert!(newer.is_file());
    let restored = messages(&home.join("Maildir/.Restored-test"));
    assert_eq!(restored.len(), 2, "{restored:?}");
    assert_eq!(messages(&home.join("Maildir/.Restored-test.Sent")).len(), 1);
    assert!(home.join("Maildir/.Restored-test/maildirfolder").is_file());
    // Merged into its own folders: only what it no longer has comes back.
    std::fs::remove_file(home.join("Maildir/cur/1001.M1P1.mail:2,S")).unwrap();
    let merged = s.json(&[
        "backup",
        "restore",
        "latest",
        "--mailbox",
        "alice@example.test",
        "--into-folder",
        "-",
        "--yes",
    ]);
    assert_eq!(merged["messages_restored"], 1, "{merged}");
    assert_eq!(merged["messages_already_there"], 2);

    // Bad input changes nothing and says what is wrong.
    let e = s.fails(&[
        "backup",
        "restore",
        "latest",
        "--mailbox",
        "alice@example.test",
        "--into-folder",
        "a/b",
        "--yes",
    ]);
    assert!(e.contains("--into-folder"), "{e}");
    let e = s.fails(&["backup", "restore", "nosuchid", "--yes"]);
    assert!(e.contains("no backup \"nosuchid\""), "{e}");
    let e = s.fails(&["backup", "list", "--from", "rest:http://127.0.0.1:9/"]);
    assert!(e.contains("backup repository"), "{e}");
    let e = s.fails(&["backup", "create", "--to", "ftp:somewhere"]);
    assert!(e.contains("--to"), "{e}");
    // Another password: the repository does not open.
    let secrets = s.path("secrets.toml");
    let text = std::fs::read_to_string(&secrets).unwrap();
    let swapped: String = text
        .lines()
        .map(|l| {
            if l.starts_with("backup_password") {
                "backup_password = \"NotTheRightOne0000000000000000000000000\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&secrets, swapped).unwrap();
    let e = s.fails(&["backup", "list"]);
    assert!(e.contains("does not open with the backup password"), "{e}");
    let e = s.fails(&["backup", "create"]);
    assert!(e.contains("does not open with the backup password"), "{e}");
    std::fs::write(&secrets, text).unwrap();

    // A DKIM key missing from a backup is found by verify.
    let key = std::fs::read_dir(s.path("dkim"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pem"))
        .unwrap();
    let saved_key = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    s.ok(&["backup", "create"]);
    std::fs::write(&key, saved_key).unwrap();
    let out = s.run(&["backup", "verify", "latest", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["problems"]
            .to_string()
            .contains("DKIM: the key of example.test"),
        "{report}"
    );

    // A flipped byte in the repository's data is found by verify.
    for pack in &files_under(&s.path("repo/data")) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pack, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut bytes = std::fs::read(pack).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(pack, bytes).unwrap();
    }
    let out = s.run(&[
        "backup",
        "verify",
        "latest",
        "--read-data",
        "100%",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(report["problems"], serde_json::json!([]));
}

/// A fresh database of `backend`; PostgreSQL and MariaDB only when their servers are up.
async fn test_db(backend: Backend) -> Option<common::TestDb> {
    match backend {
        Backend::Sqlite => Some(common::sqlite().await),
        Backend::Postgres => common::postgres().await,
        Backend::Mysql => common::mysql().await,
    }
}

/// One test per `name: Engine`, each running `scenario(&Server)` on a fresh database.
macro_rules! on_engines {
    ($scenario:path { $($test:ident: $engine:ident),+ $(,)? }) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $test() {
            if let Some(db) = test_db(Backend::$engine).await {
                $scenario(&server(db));
            }
        }
    )+};
}

on_engines!(scenario {
    backup_and_restore_on_sqlite: Sqlite,
    backup_and_restore_on_postgres: Postgres,
    backup_and_restore_on_mariadb: Mysql,
});

// ---- Failure paths, made to happen: full disks, killed processes, a failing migration. ----

/// SIGKILL to the process group of a child `Server::start` made, then its exit status.
fn kill_group(child: &mut Child) -> std::process::ExitStatus {
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap()
}

fn killed(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(nix::libc::SIGKILL)
}

/// `bytes` of random data (incompressible, so restic stores all of it) in a new file.
fn write_random(path: &Path, bytes: usize) {
    use rand::RngCore;
    let mut data = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut data);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// A tmpfs mounted for one test, unmounted when dropped, also when the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount (the tests run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Fills the filesystem with the file `.filler`, leaving `free` bytes; returns its path.
    fn fill(&self, free: u64) -> PathBuf {
        let st = nix::sys::statvfs::statvfs(&self.0).unwrap();
        let available = st.blocks_available() * st.fragment_size();
        let path = self.0.join(".filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 1 << 20];
        let mut left = available.saturating_sub(free) as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            file.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        file.sync_all().unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("--lazy").arg(&self.0).status();
    }
}

/// The tables that hold what an admin made (not the run records a backup adds).
const ADMIN_TABLES: &[&str] = &["admin_domain", "admin_mailbox", "admin_alias", "core_user"];

/// What the live server holds: alice's files with their SHA-256, and the admin tables.
fn live(s: &Server) -> (BTreeMap<String, String>, String) {
    let home = s.path("vmail/example.test/alice");
    let files = files_under(&home)
        .into_iter()
        .map(|p| {
            let digest = format!("{:x}", Sha256::digest(std::fs::read(&p).unwrap()));
            (p.strip_prefix(&home).unwrap().display().to_string(), digest)
        })
        .collect();
    (files, s.db.dump_tables(ADMIN_TABLES))
}

/// The repository's files (its locks aside, which each restic command adds and removes).
fn repository_files(s: &Server) -> Vec<String> {
    let repo = s.path("repo");
    let mut out: Vec<String> = files_under(&repo)
        .iter()
        .map(|p| p.strip_prefix(&repo).unwrap().display().to_string())
        .filter(|f| !f.starts_with("locks/"))
        .collect();
    out.sort();
    out
}

/// restic itself on the test's repository, with the password modobox generated.
fn restic(s: &Server, args: &[&str]) -> Output {
    let secrets: toml::Value =
        toml::from_str(&std::fs::read_to_string(s.path("secrets.toml")).unwrap()).unwrap();
    Command::new("restic")
        .arg("--no-cache")
        .args(args)
        .env("RESTIC_REPOSITORY", s.path("repo"))
        .env(
            "RESTIC_PASSWORD",
            secrets["backup_password"].as_str().unwrap(),
        )
        .output()
        .unwrap()
}

fn snapshot_count(s: &Server) -> usize {
    s.json(&["backup", "list"]).as_array().unwrap().len()
}

/// Whether the backup's work directory holds nothing but the mail part of the snapshot
/// (kept between runs: hard links the next run brings up to date): no dump, no server file,
/// no manifest, no scratch file.
fn work_dir_empty(s: &Server) -> bool {
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(s.path(dir))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let top = names("vmail/.modobox-backup");
    top.iter().all(|n| n == "snapshot")
        && names("vmail/.modobox-backup/snapshot")
            .iter()
            .all(|n| n == "mail")
}

/// The mail root on a small tmpfs: with no room for the database dump, then room for the dump
/// but not for a mailbox's copied files, `backup create` fails naming the file it could not
/// write and the cause, leaves nothing in the work directory, adds nothing to the repository
/// and changes nothing live; once there is space the next run works.
fn full_mail_disk(s: &Server) {
    let mail = Tmpfs::mount(&s.path("vmail"), "32m");
    populate(s);
    // Sieve scripts are copied into the snapshot, not linked: this one needs 6 MiB there.
    write_random(&s.path("vmail/example.test/alice/sieve/big.sieve"), 6 << 20);
    s.ok(&["backup", "create"]);
    let repository = repository_files(s);
    let dump = format!(
        ".modobox-backup/snapshot/database/{}",
        modobox::backup::database::file_name(match s.db.backend {
            Backend::Sqlite => modobox::config::Engine::Sqlite,
            Backend::Postgres => modobox::config::Engine::Postgres,
            Backend::Mysql => modobox::config::Engine::Mysql,
        })
    );
    // A new script (the kept snapshot has the first one already).
    let copy = ".modobox-backup/snapshot/mail/example.test/alice/sieve/big2.sieve";
    for (free, unwritable) in [(8 << 10, dump.as_str()), (4 << 20, copy)] {
        if unwritable == copy {
            write_random(
                &s.path("vmail/example.test/alice/sieve/big2.sieve"),
                6 << 20,
            );
        }
        let before = live(s);
        let filler = mail.fill(free);
        let out = s.run(&["backup", "create"]);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            e.contains("No space left on device") && e.contains(unwritable),
            "{free} bytes free: the error names {unwritable} and the cause: {e}"
        );
        assert!(work_dir_empty(s), "nothing half-written stays");
        assert!(
            !s.path(&format!("vmail/{copy}")).exists(),
            "no partial copy stays"
        );
        assert_eq!(
            repository_files(s),
            repository,
            "the repository is unchanged"
        );
        assert_eq!(live(s), before, "the live mail and database are untouched");
        std::fs::remove_file(filler).unwrap();
    }
    let check = restic(s, &["check"]);
    assert!(check.status.success(), "{check:?}");
    assert_eq!(snapshot_count(s), 1);
    s.ok(&["backup", "create"]);
    assert_eq!(snapshot_count(s), 2);
    assert!(work_dir_empty(s));
}

on_engines!(full_mail_disk {
    full_mail_disk_on_sqlite: Sqlite,
    full_mail_disk_on_postgres: Postgres,
    full_mail_disk_on_mariadb: Mysql,
});

/// The repository on a small tmpfs that fills during `restic backup`: a clear error, no new
/// snapshot, the earlier backup still restores, and after freeing space the next run works.
#[tokio::test(flavor = "multi_thread")]
async fn full_repository_disk() {
    let s = server(common::sqlite().await);
    let repo = Tmpfs::mount(&s.path("repo"), "64m");
    populate(&s);
    s.ok(&["backup", "create"]);
    // 24 MiB of new mail that does not compress, for 16 MiB of space.
    write_random(
        &s.path("vmail/example.test/alice/Maildir/cur/2001.M5P1.mail:2,S"),
        24 << 20,
    );
    let before = live(&s);
    let filler = repo.fill(16 << 20);
    let e = s.fails(&["backup", "create"]);
    assert!(
        e.contains("no space left on device: `restic backup` with the backup repository")
            && e.contains(&s.path("repo").display().to_string()),
        "{e}"
    );
    assert!(work_dir_empty(&s));
    assert_eq!(live(&s), before);
    assert_eq!(snapshot_count(&s), 1, "no half snapshot");
    // The earlier backup restores: read back whole, every file checked.
    let verified = s.json(&["backup", "verify", "latest", "--read-data", "100%"]);
    assert_eq!(verified["problems"], serde_json::json!([]), "{verified}");
    assert_eq!(verified["messages"], 3);
    std::fs::remove_file(filler).unwrap();
    let created = s.json(&["backup", "create"]);
    assert_eq!(created["messages"], 4, "{created}");
    assert_eq!(snapshot_count(&s), 2);
}

/// A backup, then the live database moves on: a domain less, a domain more. Returns the
/// admin tables as they are now.
fn backup_then_change(s: &Server) -> String {
    s.ok(&["backup", "create"]);
    s.ok(&["domain", "del", "gone.test", "--yes"]);
    s.ok(&["domain", "add", "after.test"]);
    s.db.dump_tables(ADMIN_TABLES)
}

/// The live database is the backup's: the deleted domain is back, the newer one gone.
fn database_is_the_backup_s(s: &Server) {
    s.ok(&["domain", "show", "gone.test"]);
    s.ok(&["alias", "show", "info@gone.test"]);
    s.fails(&["domain", "show", "after.test"]);
}

/// PostgreSQL restores in one transaction that drops the live tables and loads the backup's.
/// A reader holding the table dropped last keeps that transaction waiting half-way (holding
/// the tables it has dropped); the restore is killed there, with its psql. The server rolls
/// the transaction back: the live database is the old one, whole; run again, it completes.
#[tokio::test(flavor = "multi_thread")]
async fn killed_restore_on_postgres() {
    use sqlx::{Connection, Executor, Row};
    let Some(db) = common::postgres().await else {
        return;
    };
    let s = server(db);
    populate(&s);
    let old = backup_then_change(&s);
    let mut reader = sqlx::PgConnection::connect(&s.db.raw_url).await.unwrap();
    // The restore drops tables in this order (the same query, the same scan).
    let last: String = sqlx::query(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')",
    )
    .fetch_all(&mut reader)
    .await
    .unwrap()
    .last()
    .unwrap()
    .get(0);
    reader.execute("BEGIN").await.unwrap();
    reader
        .execute(format!("LOCK TABLE public.\"{last}\" IN ACCESS SHARE MODE").as_str())
        .await
        .unwrap();
    let mut child = s.start(
        &["backup", "restore", "latest", "--only", "db", "--yes"],
        None,
    );
    let mut watcher = sqlx::PgConnection::connect(&s.db.raw_url).await.unwrap();
    let backend = loop {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 \
             AND application_name = 'psql' AND wait_event_type = 'Lock'",
        )
        .bind(&s.db.name)
        .fetch_optional(&mut watcher)
        .await
        .unwrap();
        if let Some(pid) = waiting {
            break pid;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before it waited: {:?}",
            child.wait_with_output()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let dropped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE pid = $1 AND granted \
         AND mode = 'AccessExclusiveLock' AND relation IS NOT NULL",
    )
    .bind(backend)
    .fetch_one(&mut watcher)
    .await
    .unwrap();
    assert!(dropped > 0, "the restore's transaction is half-way");
    assert!(killed(kill_group(&mut child)));
    reader.execute("COMMIT").await.unwrap();
    // Once it has the lock, the server finds its client gone and rolls back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alive: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(backend)
            .fetch_one(&mut watcher)
            .await
            .unwrap();
        if alive == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed restore's session stays"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        s.db.dump_tables(ADMIN_TABLES),
        old,
        "the old database, whole"
    );
    s.ok(&["backup", "restore", "latest", "--only", "db", "--yes"]);
    database_is_the_backup_s(&s);
}

/// The failures that need fault points (`cargo test --features fault-injection`).
#[cfg(feature = "fault-injection")]
mod faults {
    use super::*;

    /// Polls `done` every few milliseconds until it holds; fails the test after a minute.
    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The state letter of a process (`R`, `S`, `T` stopped, `Z`...), `None` once it is reaped.
    fn process_state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')').next()?.trim_start().chars().next()
    }

    fn repository_locks(s: &Server) -> usize {
        std::fs::read_dir(s.path("repo/locks"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }

    /// Whether the repository holds a lock restic has finished writing: restic makes each file
    /// read-only once it is written (a lock caught half-written cannot be read, and restic
    /// ignores it).
    fn written_lock(s: &Server) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::read_dir(s.path("repo/locks")).is_ok_and(|rd| {
            rd.filter_map(Result::ok).any(|e| {
                e.metadata()
                    .is_ok_and(|m| m.len() > 0 && m.permissions().mode() & 0o222 == 0)
            })
        })
    }

    /// Whether `parent` has a `restic <command>` child running.
    fn restic_child(parent: u32, command: &str) -> bool {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return false;
        };
        dir.filter_map(Result::ok).any(|e| {
            let p = e.path();
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            let args = std::fs::read(p.join("cmdline")).unwrap_or_default();
            let mut args = args.split(|b| *b == 0);
            ppid == Some(parent)
                && args.next().is_some_and(|a| a.ends_with(b"restic"))
                && args.any(|a| a == command.as_bytes())
        })
    }

    /// A backup killed mid-way never blocks the next one. Stopped right after its dump, it holds
    /// the run lock (another backup or a restore is refused: they would share its work); killed
    /// there, the kernel drops that lock and its half-made snapshot is replaced by the next run's.
    /// Killed while restic uploads, restic's own lock stays in the repository: the next
    /// scheduled run's `forget --prune`, which needs the repository to itself, removes that
    /// stale lock instead of failing, and the repository verifies clean.
    #[tokio::test(flavor = "multi_thread")]
    async fn killed_backups_leave_nothing_in_the_way() {
        let s = server(common::sqlite().await);
        populate(&s);
        s.ok(&["backup", "create"]);

        let mut child = s.start(&["backup", "create"], Some("backup.after-dump:stop"));
        wait_until("the backup stops after its dump", || {
            process_state(child.id()) == Some('T')
        });
        let e = s.fails(&["backup", "create"]);
        assert!(e.contains("another backup is running"), "{e}");
        let e = s.fails(&["backup", "restore", "latest", "--only", "db", "--yes"]);
        assert!(e.contains("another backup is running"), "{e}");
        assert!(killed(kill_group(&mut child)));
        assert!(
            s.path("vmail/.modobox-backup/snapshot/database/modobox.sqlite3")
                .is_file(),
            "the killed run left its half-made snapshot"
        );
        let created = s.json(&["backup", "create"]);
        assert_eq!(created["messages"], 3, "{created}");
        assert_eq!(snapshot_count(&s), 2);
        assert!(work_dir_empty(&s));

        // Enough new mail that restic is still uploading when it is killed.
        write_random(
            &s.path("vmail/example.test/alice/Maildir/cur/2001.M5P1.mail:2,S"),
            64 << 20,
        );
        let mut child = s.start(&["backup", "create"], None);
        let pid = child.id();
        wait_until("restic uploads, holding its lock", || {
            restic_child(pid, "backup") && written_lock(&s)
        });
        assert!(killed(kill_group(&mut child)));
        assert_eq!(repository_locks(&s), 1, "the killed restic's lock stays");
        assert_eq!(snapshot_count(&s), 2, "no half snapshot");
        // The next scheduled run: a backup, then `forget --prune`, which needs the repository
        // to itself.
        let run = s.ok(&["task", "run", "backup"]);
        assert!(run.contains("4 messages"), "{run}");
        assert_eq!(repository_locks(&s), 0, "the stale lock was removed");
        assert_eq!(
            snapshot_count(&s),
            1,
            "keep_daily keeps one backup of today"
        );
        let verified = s.json(&["backup", "verify", "latest"]);
        assert_eq!(verified["problems"], serde_json::json!([]), "{verified}");
        assert!(work_dir_empty(&s));
    }

    /// What a restore of the database swaps, as the engine's client sees it.
    fn restore_leftovers(s: &Server) -> Vec<String> {
        match s.db.backend {
            Backend::Sqlite => {
                let live = Path::new(&s.db.name);
                let incoming = live.with_extension("restoring");
                incoming
                    .exists()
                    .then(|| incoming.display().to_string())
                    .into_iter()
                    .collect()
            }
            _ => {
                s.db.query("SHOW DATABASES")
                    .lines()
                    .filter(|d| d.starts_with(&format!("{}_", s.db.name)) && d.contains("restore_"))
                    .map(str::to_string)
                    .collect()
            }
        }
    }

    /// A restore of the database killed between loading the backup and swapping it in (SQLite:
    /// the copy made and checked beside the live file; MariaDB: the new database loaded): the
    /// live database is the old one, whole; the same restore run again completes and leaves
    /// nothing of the killed one behind.
    fn killed_restore_before_the_swap(s: &Server) {
        populate(s);
        let old = backup_then_change(s);
        let mut child = s.start(
            &["backup", "restore", "latest", "--only", "db", "--yes"],
            Some("restore.db-swap:kill"),
        );
        assert!(killed(child.wait().unwrap()));
        assert_eq!(
            s.db.dump_tables(ADMIN_TABLES),
            old,
            "the old database, whole"
        );
        assert_eq!(
            restore_leftovers(s).len(),
            1,
            "the killed restore's loaded copy"
        );
        s.ok(&["backup", "restore", "latest", "--only", "db", "--yes"]);
        database_is_the_backup_s(s);
        assert_eq!(restore_leftovers(s), Vec::<String>::new());
    }

    on_engines!(killed_restore_before_the_swap {
        killed_restore_on_sqlite: Sqlite,
        killed_restore_on_mariadb: Mysql,
    });

    /// Migration 4 undone by hand: the database as modobox at schema 3 left it.
    fn downgrade_to_schema_3(s: &Server) {
        let drop_index = match s.db.backend {
            Backend::Mysql => "DROP INDEX modobox_task_run_slot_idx ON modobox_task_run",
            _ => "DROP INDEX modobox_task_run_slot_idx",
        };
        s.db.query(&format!(
            "{drop_index}; ALTER TABLE modobox_task_run DROP COLUMN slot; \
             DROP TABLE modobox_sending_count; DROP TABLE modobox_tls_report; \
             DROP TABLE modobox_dmarc_record; DROP TABLE modobox_dmarc_report; \
             DELETE FROM modobox_schema_migration WHERE version >= 4;"
        ));
    }

    /// Whether `modobox_task_run` has migration 4's column.
    fn slot_column(s: &Server) -> bool {
        let sql = match s.db.backend {
            Backend::Sqlite => {
                "SELECT count(*) FROM pragma_table_info('modobox_task_run') WHERE name = 'slot'"
            }
            Backend::Postgres => {
                "SELECT count(*) FROM information_schema.columns \
                 WHERE table_name = 'modobox_task_run' AND column_name = 'slot'"
            }
            Backend::Mysql => {
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = DATABASE() \
                 AND table_name = 'modobox_task_run' AND column_name = 'slot'"
            }
        };
        s.db.query(sql).trim() == "1"
    }

    /// The migrations a database at schema 3 has pending.
    const AFTER_SCHEMA_3: [&str; 4] = [
        "0004_task_run_slot",
        "0005_sending_count",
        "0006_tls_reports",
        "0007_dmarc_reports",
    ];

    fn pending_migrations(s: &Server) -> Vec<String> {
        // Its exit code says whether any is pending; the list is what is compared.
        let out = s.run(&["db", "status", "--json"]);
        let status: Value = serde_json::from_slice(&out.stdout).unwrap();
        status["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["applied"] == false)
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// A backup from schema 3 restored by a modobox at schema 4, whose migration 4 fails half-way
    /// (after its first statement): the command names the failing migration; the database holds
    /// the restored data with migration 4 pending — at the backup's schema on PostgreSQL and
    /// SQLite (the migrations' transaction rolled back), with the statement that took effect
    /// recorded on MariaDB (whose DDL commits itself); `db migrate` then completes it (on
    /// MariaDB from the next statement, not failing on the column that exists).
    fn failed_migration_after_restore(s: &Server) {
        populate(s);
        downgrade_to_schema_3(s);
        assert_eq!(pending_migrations(s), AFTER_SCHEMA_3);
        s.ok(&["backup", "create"]);
        assert_eq!(s.json(&["backup", "show", "latest"])["schema_version"], 3);
        s.ok(&["db", "migrate"]);
        s.ok(&["domain", "del", "gone.test", "--yes"]);
        s.ok(&["domain", "add", "after.test"]);

        let out = s
            .start(
                &["backup", "restore", "latest", "--only", "db", "--yes"],
                Some("migrate.0004_task_run_slot.2"),
            )
            .wait_with_output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains(
                "migration 4 (0004_task_run_slot): fault injected at migrate.0004_task_run_slot.2"
            ),
            "{text}"
        );
        database_is_the_backup_s(s);
        assert_eq!(pending_migrations(s), AFTER_SCHEMA_3);
        if s.db.backend == Backend::Mysql {
            // Its first statement (ADD COLUMN) committed itself, and is recorded as done.
            assert!(slot_column(s));
            let done =
                s.db.query("SELECT statements FROM modobox_schema_progress WHERE version = 4");
            assert_eq!(done.trim(), "1");
        } else {
            assert!(!slot_column(s), "the migration's transaction rolled back");
        }
        s.ok(&["db", "migrate"]);
        assert_eq!(pending_migrations(s), Vec::<String>::new());
        database_is_the_backup_s(s);
    }

    /// Library calls on the server's configuration, on a runtime of their own in a thread of
    /// their own (a fault armed with `fault::armed_in_this_thread` stays in that thread).
    fn in_thread<T: Send>(
        s: &Server,
        work: impl FnOnce(
                &tokio::runtime::Runtime,
                &modobox::config::Config,
                &modobox::secrets::Secrets,
                &modobox::store::Store,
            ) -> T
            + Send,
    ) -> T {
        std::thread::scope(|t| {
            t.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let config = modobox::config::Config::load(&s.config).unwrap();
                let secrets =
                    modobox::secrets::Secrets::load_or_create(config.paths.secrets.as_path())
                        .unwrap();
                let url = modobox::store::DatabaseUrl::from_config(&config, &secrets);
                let store = rt.block_on(modobox::store::Store::connect(&url)).unwrap();
                let out = work(&rt, &config, &secrets, &store);
                rt.block_on(store.close());
                out
            })
            .join()
            .unwrap()
        })
    }

    /// An upgrade whose migration 4 fails at its second statement, the upgrade's own database
    /// work on every engine: the restore point's dump of the schema-3 database; the migration
    /// dry run on a copy fails first and the real database is untouched; the same failure
    /// after the swap (on the real database) is undone by the rollback's database part —
    /// nothing to undo on PostgreSQL and SQLite (the migrations' transaction rolled back), the
    /// dump loaded on MariaDB (whose first DDL statement had committed itself). Then the
    /// migration completes, and a rollback after it (migration 4 is not additive) loads the dump.
    fn failed_migration_during_an_upgrade(s: &Server) {
        use modobox::upgrade::restore_point::{self, Contents, DatabaseBack};
        const FAULT: &str = "migrate.0004_task_run_slot.2";
        populate(s);
        downgrade_to_schema_3(s);
        s.ok(&["domain", "add", "before.test"]);
        let tables = ["admin_domain", "core_user", "admin_alias", "admin_mailbox"];
        let rows = s.db.dump_tables(&tables);
        let old_binary = s.path("releases-test/modobox");
        write(&old_binary, "#!/bin/sh\n");

        let dir = in_thread(s, |rt, config, secrets, store| {
            let contents = Contents {
                binary: &old_binary,
                trees: vec![],
                paths: vec![],
            };
            let point = rt
                .block_on(restore_point::create(
                    config, secrets, store, "0.1.0", &contents,
                ))
                .unwrap();
            assert_eq!(point.meta.schema, 3);
            let dry = modobox::fault::armed_in_this_thread(FAULT, || {
                rt.block_on(point.migration_dry_run(config, secrets))
            });
            let e = dry
                .expect_err("the dry run goes through the failing migration")
                .to_string();
            assert!(e.contains(&format!("fault injected at {FAULT}")), "{e}");
            point.dir
        });
        assert_eq!(
            s.db.dump_tables(&tables),
            rows,
            "the dry run touched the database"
        );
        assert_eq!(pending_migrations(s), AFTER_SCHEMA_3);
        assert!(!slot_column(s));

        let backend = s.db.backend;
        in_thread(s, |rt, config, secrets, store| {
            let point = restore_point::RestorePoint::load(&dir).unwrap();
            let failed = modobox::fault::armed_in_this_thread(FAULT, || {
                rt.block_on(modobox::store::migrate::migrate(store))
            });
            let e = failed.expect_err("migration 4 fails half-way").to_string();
            assert!(e.contains("migration 4 (0004_task_run_slot)"), "{e}");
            let back = rt
                .block_on(point.put_database_back(config, secrets, store, || true))
                .unwrap();
            let expected = if backend == Backend::Mysql {
                DatabaseBack::Restored {
                    undone: vec![],
                    unfinished: vec![4],
                }
            } else {
                DatabaseBack::Unchanged
            };
            assert_eq!(back, expected);
        });
        assert_eq!(s.db.dump_tables(&tables), rows, "rows after the rollback");
        assert!(!slot_column(s), "schema 3 after the rollback");
        assert_eq!(pending_migrations(s), AFTER_SCHEMA_3);

        // Done again without the fault: complete; then rolled back by hand: the dump again.
        s.ok(&["db", "migrate"]);
        assert!(slot_column(s));
        in_thread(s, |rt, config, secrets, store| {
            let point = restore_point::RestorePoint::load(&dir).unwrap();
            let back = rt
                .block_on(point.put_database_back(config, secrets, store, || true))
                .unwrap();
            assert_eq!(
                back,
                DatabaseBack::Restored {
                    undone: vec![4, 5, 6, 7],
                    unfinished: vec![],
                },
                "migration 4 is not additive"
            );
        });
        assert_eq!(s.db.dump_tables(&tables), rows);
        assert!(!slot_column(s));
        assert_eq!(pending_migrations(s), AFTER_SCHEMA_3);
    }

    on_engines!(failed_migration_during_an_upgrade {
        failed_migration_during_an_upgrade_on_sqlite: Sqlite,
        failed_migration_during_an_upgrade_on_postgres: Postgres,
        failed_migration_during_an_upgrade_on_mariadb: Mysql,
    });

    on_engines!(failed_migration_after_restore {
        failed_migration_after_restore_on_sqlite: Sqlite,
        failed_migration_after_restore_on_postgres: Postgres,
        failed_migration_after_restore_on_mariadb: Mysql,
    });
}
