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
use std::process::{Command, Output, Stdio};

use modobox::store::Backend;
use serde_json::Value;
use sha2::{Digest, Sha256};

struct Server {
    dir: tempfile::TempDir,
    config: PathBuf,
    _db: common::TestDb,
}

impl Server {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_modobox"))
            .args(args)
            .env("MODOBOX_CONFIG", &self.config)
            .env_remove("MODOBOX_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"").unwrap();
        child.wait_with_output().unwrap()
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
    Server {
        dir,
        config,
        _db: db,
    }
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
    let mut packs = Vec::new();
    let mut stack = vec![s.path("repo/data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().filter_map(Result::ok) {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                packs.push(e.path());
            }
        }
    }
    for pack in &packs {
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

#[tokio::test(flavor = "multi_thread")]
async fn backup_and_restore_on_sqlite() {
    scenario(&server(common::sqlite().await));
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_and_restore_on_postgres() {
    if let Some(db) = common::postgres().await {
        scenario(&server(db));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_and_restore_on_mariadb() {
    if let Some(db) = common::mysql().await {
        scenario(&server(db));
    }
}
