//! Running a tool "by hand", the way a user's shell does: fork/exec of the program
//! with the params on stdin (`prog < params.json`), timed from spawn to exit with the
//! output read. No sandbox, no limits, the bench's own environment plus what the row
//! names.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One command line, spawned afresh for every sample.
pub struct Hand {
    command: Command,
    stdin: Vec<u8>,
    shown: String,
}

impl Hand {
    /// `program args…` in `cwd`, with `env` on top of the bench's environment.
    pub fn new(program: &Path, args: &[&str], cwd: &Path, env: &[(&str, &str)], stdin: &[u8]) -> Hand {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .collect::<Vec<_>>()
            .join(" ");
        Hand {
            command,
            stdin: stdin.to_vec(),
            shown,
        }
    }

    /// Replaces the inherited environment with exactly `env`.
    pub fn clean_env<'a>(mut self, env: impl IntoIterator<Item = (&'a String, &'a String)>) -> Hand {
        self.command.env_clear().envs(env);
        self
    }

    /// Runs it once: the wall time from spawn to exit (stdout and stderr read to the
    /// end), and stdout. A failure is an error naming the command and its stderr.
    pub fn run(&mut self) -> Result<(Duration, Vec<u8>)> {
        let t = Instant::now();
        let mut child = self
            .command
            .spawn()
            .with_context(|| format!("cannot start `{}`", self.shown))?;
        // The params are far below a pipe's capacity, so writing all of them before
        // reading the output cannot deadlock. A program that exits without reading
        // them (`/bin/true`) closes the pipe first: not an error.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        match stdin.write_all(&self.stdin) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(e).with_context(|| format!("cannot write the params to `{}`", self.shown));
            }
            _ => {}
        }
        drop(stdin);
        let out = child.wait_with_output()?;
        let elapsed = t.elapsed();
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                self.shown,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok((elapsed, out.stdout))
    }
}
