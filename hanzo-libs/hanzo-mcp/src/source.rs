//! A job's SOURCE for the `mcp` runtime (CONTRACTS §9): the URL of a streamable-HTTP
//! server, or the command line of a stdio server.

use hanzo_compute::ComputeError;

/// Where an MCP server is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A streamable-HTTP server (`http://` or `https://`), called by the node itself.
    Http(String),
    /// A stdio server: the program and its arguments, split as a POSIX shell would
    /// (quotes and backslashes), with no shell ever run.
    Stdio(Vec<String>),
}

/// The longest SOURCE taken: a command line or a URL, not a document.
const MAX_SOURCE_BYTES: usize = 8192;

impl Source {
    /// Parses a SOURCE; a bad one is bad input naming what is wrong.
    pub fn parse(source: &str) -> Result<Source, ComputeError> {
        let s = source.trim();
        if s.is_empty() {
            return Err(ComputeError::invalid(
                "an MCP source is an http(s):// URL or a command line, and this one is empty",
            ));
        }
        if s.len() > MAX_SOURCE_BYTES {
            return Err(ComputeError::invalid(format!(
                "an MCP source of {} bytes (at most {MAX_SOURCE_BYTES})",
                s.len()
            )));
        }
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let rest = &s[s.find("://").unwrap_or(0) + 3..];
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            if host.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ComputeError::invalid(format!(
                    "'{s}' is not a URL an MCP client can call"
                )));
            }
            return Ok(Source::Http(s.to_string()));
        }
        if let Some((scheme, _)) = s.split_once("://")
            && !scheme.contains(char::is_whitespace)
        {
            return Err(ComputeError::invalid(format!(
                "MCP servers are reached over http:// or https:// or started as a command, not over {scheme}://"
            )));
        }
        let argv = shlex::split(s).filter(|a| !a.is_empty()).ok_or_else(|| {
            ComputeError::invalid(format!("the MCP command line has an unclosed quote: {s}"))
        })?;
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(ComputeError::invalid("the MCP command line has a NUL byte"));
        }
        Ok(Source::Stdio(argv))
    }
}

impl Source {
    /// `source` with a relative program path (`./venv/bin/server`) made absolute
    /// against `cwd`, as the operator's shell meant it; anything else unchanged.
    pub fn absolutize(source: &str, cwd: &std::path::Path) -> Result<String, ComputeError> {
        match Source::parse(source)? {
            Source::Stdio(mut argv) if argv[0].contains('/') && !argv[0].starts_with('/') => {
                argv[0] = cwd.join(&argv[0]).display().to_string();
                shlex::try_join(argv.iter().map(String::as_str))
                    .map_err(|e| ComputeError::invalid(format!("the MCP command line: {e}")))
            }
            _ => Ok(source.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_command_lines_are_told_apart() {
        assert_eq!(
            Source::parse(" http://127.0.0.1:3001/mcp ").unwrap(),
            Source::Http("http://127.0.0.1:3001/mcp".into())
        );
        assert_eq!(
            Source::parse("HTTPS://example.org/mcp").unwrap(),
            Source::Http("HTTPS://example.org/mcp".into())
        );
        assert_eq!(
            Source::parse(r#"/opt/x/bin/mcp-server-time --local-timezone "Europe/Paris""#).unwrap(),
            Source::Stdio(vec![
                "/opt/x/bin/mcp-server-time".into(),
                "--local-timezone".into(),
                "Europe/Paris".into()
            ])
        );
        assert_eq!(
            Source::parse(r"server 'a b' c\ d").unwrap(),
            Source::Stdio(vec!["server".into(), "a b".into(), "c d".into()])
        );
    }

    #[test]
    fn a_relative_program_is_made_absolute_and_the_rest_kept() {
        let cwd = std::path::Path::new("/home/me/work");
        assert_eq!(
            Source::absolutize("./venv/bin/s --tz 'Europe/Paris x'", cwd).unwrap(),
            "/home/me/work/./venv/bin/s --tz 'Europe/Paris x'"
        );
        for same in ["mcp-server-time", "/opt/s", "http://127.0.0.1/mcp"] {
            assert_eq!(Source::absolutize(same, cwd).unwrap(), same);
        }
    }

    #[test]
    fn bad_sources_are_bad_input() {
        for s in [
            "",
            "   ",
            "http://",
            "https:///x",
            "http://a b/",
            "ftp://x/y",
            "server 'unclosed",
        ] {
            let e = Source::parse(s).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{s}: {e}");
        }
        assert!(Source::parse(&"x".repeat(MAX_SOURCE_BYTES + 1)).is_err());
    }
}
