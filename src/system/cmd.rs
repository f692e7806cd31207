//! Running the system's own tools (apt, dnf, psql, postfix, doveconf...). Secrets never go into
//! arguments (they are visible in `ps`): callers pass them on standard input.

use std::io::Write;
use std::process::{Command, Stdio};

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

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
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

    /// Runs it and returns what it printed, whatever its exit status.
    pub fn output(&self) -> Result<Output, CmdError> {
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
        let spawn_err = |source| CmdError::Spawn {
            program: self.program.clone(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_err)?;
        if let (Some(input), Some(mut pipe)) = (&self.stdin, child.stdin.take()) {
            // A program that exits without reading all of its input is reported by its status.
            let _ = pipe.write_all(input);
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        Ok(Output {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs it and fails with its last lines of output unless it exits with 0.
    pub fn run(&self) -> Result<Output, CmdError> {
        let out = self.output()?;
        if out.success {
            return Ok(out);
        }
        Err(CmdError::Failed {
            shown: self.shown(),
            status: out
                .code
                .map_or_else(|| "killed by a signal".into(), |c| format!("exit code {c}")),
            output: tail(&format!("{}{}", out.stdout, out.stderr), 15),
        })
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
}
