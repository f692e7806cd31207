//! Running the system's own tools (apt, dnf, psql, postfix, doveconf...). Secrets never go into
//! arguments (they are visible in `ps`): callers pass them on standard input.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("{program}: cannot run it: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{shown}` failed ({status}){output}")]
    Failed {
        shown: String,
        status: String,
        /// The last lines of its output, prefixed with a newline when there are any.
        output: String,
    },
}

/// One command line. `shown` is what errors print: the program and its arguments, which must
/// never hold a secret.
#[derive(Debug)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
}

/// A started command whose standard output is read as it comes (`Cmd::stream`), for output
/// too large to hold at once (the journal).
#[derive(Debug)]
pub struct Streaming {
    program: String,
    shown: String,
    child: Child,
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Self {
        Output {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Cmd {
    pub fn new(program: &str) -> Self {
        Cmd {
            program: program.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        }
    }
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    /// Feeds `input` on standard input (how secrets reach a program).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    pub fn shown(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts it with standard output and standard error on pipes, standard input fed from
    /// `stdin` (or empty).
    fn spawn(&self) -> Result<Child, CmdError> {
        tracing::debug!("running {}", self.shown());
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let mut child = command.spawn().map_err(|source| self.spawn_error(source))?;
        if let (Some(input), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
            // A program that exits without reading all of its input is reported by its status.
            let _ = pipe.write_all(input);
        }
        Ok(child)
    }

    fn spawn_error(&self, source: std::io::Error) -> CmdError {
        CmdError::Spawn {
            program: self.program.clone(),
            source,
        }
    }

    /// Runs it and returns what it printed, whatever its exit status.
    pub fn output(&self) -> Result<Output, CmdError> {
        let child = self.spawn()?;
        let out = child
            .wait_with_output()
            .map_err(|source| self.spawn_error(source))?;
        Ok(Output::from(out))
    }

    /// Runs it like `output`, but ends it (SIGKILL) as soon as a line of its standard error
    /// satisfies `stop`: for programs that retry for many minutes what cannot succeed (restic
    /// on a full disk). What it printed until then is returned, with a failed status.
    pub fn output_stopping_on(
        &self,
        stop: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<Output, CmdError> {
        use std::io::{BufRead, BufReader};
        let mut child = self.spawn()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let stderr = child.stderr.take();
        let watcher = std::thread::spawn(move || {
            let mut text = String::new();
            let mut stopped = false;
            if let Some(pipe) = stderr {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if !stopped && stop(&line) {
                        stopped = true;
                        // The program only: it stays in our process group (a Ctrl-C still
                        // reaches it); its own children end when their pipes to it close.
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    }
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            (text, stopped)
        });
        let mut stdout = String::new();
        if let Some(mut pipe) = child.stdout.take() {
            let _ = pipe.read_to_string(&mut stdout);
        }
        let status = child.wait().map_err(|source| self.spawn_error(source))?;
        let (stderr, stopped) = watcher.join().unwrap_or_default();
        Ok(Output {
            success: status.success() && !stopped,
            code: status.code(),
            stdout,
            stderr,
        })
    }

    /// Starts it and hands back its standard output to read as it comes; `Streaming::finish`
    /// then waits for its end. Standard error is read only then: for programs that say little
    /// there.
    pub fn stream(&self) -> Result<Streaming, CmdError> {
        Ok(Streaming {
            program: self.program.clone(),
            shown: self.shown(),
            child: self.spawn()?,
        })
    }

    /// Runs it and fails with its last lines of output unless it exits with 0.
    pub fn run(&self) -> Result<Output, CmdError> {
        checked(self.shown(), self.output()?)
    }
}

/// `out` when the command succeeded, else the error naming it with its last lines of output.
fn checked(shown: String, out: Output) -> Result<Output, CmdError> {
    if out.success {
        return Ok(out);
    }
    Err(CmdError::Failed {
        shown,
        status: out
            .code
            .map_or_else(|| "killed by a signal".into(), |c| format!("exit code {c}")),
        output: tail(&format!("{}{}", out.stdout, out.stderr), 15),
    })
}

impl Read for Streaming {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.child.stdout.as_mut() {
            Some(stdout) => stdout.read(buf),
            None => Ok(0),
        }
    }
}

impl Streaming {
    /// Waits for its end and returns its status and standard error (`stdout` holds only what
    /// was not read), whatever its exit status.
    pub fn finish(self) -> Result<Output, CmdError> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|source| CmdError::Spawn {
                program: self.program,
                source,
            })?;
        Ok(Output::from(out))
    }

    /// Like `finish`, but fails as `Cmd::run` does unless it exited with 0.
    pub fn finish_ok(self) -> Result<Output, CmdError> {
        let shown = self.shown.clone();
        checked(shown, self.finish()?)
    }

    /// Ends it at once (SIGKILL) and reaps it: for when what it prints can no longer be kept.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` non-empty lines, each indented, after a newline; empty when there are none.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| format!("\n  {l}")).collect()
}

/// Whether `program` is on the PATH (or is an existing absolute path).
pub fn exists(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_on_stderr_can_stop_a_program() {
        let started = std::time::Instant::now();
        let out = Cmd::new("sh")
            .args([
                "-c",
                "echo first; echo 'retrying: no space left on device' >&2; exec sleep 30",
            ])
            .output_stopping_on(|l| l.contains("no space left"))
            .unwrap();
        assert!(!out.success);
        assert_eq!(out.stdout, "first\n");
        assert!(out.stderr.contains("no space left on device"));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let fine = Cmd::new("sh")
            .args(["-c", "echo ok; echo note >&2"])
            .output_stopping_on(|l| l.contains("no space left"))
            .unwrap();
        assert!(fine.success && fine.stdout == "ok\n" && fine.stderr == "note\n");
    }

    #[test]
    fn output_status_and_stdin() {
        let out = Cmd::new("sh")
            .args(["-c", "read x; echo got $x; echo err >&2"])
            .stdin("secret\n")
            .run()
            .unwrap();
        assert_eq!(out.stdout, "got secret\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn failure_names_the_command_and_shows_its_output() {
        let e = Cmd::new("sh")
            .args(["-c", "echo first; echo boom >&2; exit 3"])
            .run()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("`sh -c echo first; echo boom >&2; exit 3` failed (exit code 3)"));
        assert!(e.contains("\n  boom"), "{e}");
        let e = Cmd::new("/nonexistent/tool").run().unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/tool: cannot run it"), "{e}");
        assert!(exists("sh"));
        assert!(!exists("no-such-program-here"));
    }

    #[test]
    fn streamed_output_is_read_as_it_comes_then_the_status() {
        let mut running = Cmd::new("sh")
            .args(["-c", "read x; echo got $x; echo err >&2; exit 2"])
            .stdin("line\n")
            .stream()
            .unwrap();
        let mut text = String::new();
        running.read_to_string(&mut text).unwrap();
        assert_eq!(text, "got line\n");
        let out = running.finish().unwrap();
        assert!(!out.success);
        assert_eq!(out.code, Some(2));
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.stdout, "");
    }
}
