//! The agent file (CONTRACTS §10): what an `agent` job runs. A TOML document naming an
//! OpenAI-compatible chat-completions endpoint, the model, the node's tools it may
//! call and how many calls it may make.
//!
//! It lives here, beside [`JobSpec`](crate::JobSpec), because more than the runtime
//! reads it: the API's policy checks its endpoint before a job is accepted, and a
//! named agent tool is checked when it is registered.

use crate::ComputeError;
use serde::Deserialize;

/// The most tool calls an agent file may allow, whatever the node's ceiling.
pub const MAX_STEPS_CAP: u32 = 1024;

/// The most tools one agent may be given.
pub const MAX_TOOLS: usize = 128;

/// An agent file, parsed and checked. Unknown keys are refused, as in the node's
/// configuration: a misspelt `max_step` must not silently mean the default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// The base URL of an OpenAI-compatible API (`http://127.0.0.1:11434/v1`); the
    /// agent posts to `<endpoint>/chat/completions`.
    pub endpoint: String,
    /// The model's name as the endpoint knows it.
    pub model: String,
    /// The environment variable holding the API key, sent as `Authorization: Bearer`.
    /// Read from the job's env, else from the node's environment when the operator
    /// lists it in `[compute.agent] key_vars`. None: no key is sent (Ollama, llama.cpp).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The system message that starts every conversation.
    #[serde(default)]
    pub system: Option<String>,
    /// Named tools of the node the model may call.
    #[serde(default)]
    pub tools: Vec<String>,
    /// The most tool calls in one run; one more is a limit (`steps`, exit 3).
    #[serde(default = "default_max_steps")]
    pub max_steps: u32,
    /// Sampling temperature, passed through.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// The most tokens per model reply, passed through as `max_tokens`.
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

fn default_max_steps() -> u32 {
    8
}

impl AgentFile {
    /// Parses and checks an agent file's text; the error is bad input naming the key.
    pub fn parse(text: &str) -> Result<AgentFile, ComputeError> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| ComputeError::invalid(format!("agent file: {}", one_line(&e.to_string()))))?;
        let file: AgentFile = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            let inner = one_line(&e.into_inner().to_string());
            if path == "." || path.is_empty() {
                ComputeError::invalid(format!("agent file: {inner}"))
            } else {
                ComputeError::invalid(format!("agent file: {path}: {inner}"))
            }
        })?;
        file.check()?;
        Ok(file)
    }

    fn check(&self) -> Result<(), ComputeError> {
        let bad = |m: String| Err(ComputeError::invalid(format!("agent file: {m}")));
        let lower = self.endpoint.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return bad(format!(
                "endpoint: {:?} is not an http:// or https:// URL",
                self.endpoint
            ));
        }
        if self.endpoint.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("endpoint: a URL has no spaces or control characters".into());
        }
        if self.model.trim().is_empty() {
            return bad("model: empty".into());
        }
        if let Some(var) = &self.api_key_env
            && (var.is_empty() || var.contains('=') || var.contains('\0'))
        {
            return bad(format!("api_key_env: {var:?} is not a variable name"));
        }
        if self.max_steps == 0 || self.max_steps > MAX_STEPS_CAP {
            return bad(format!(
                "max_steps: {} is not within 1..={MAX_STEPS_CAP}",
                self.max_steps
            ));
        }
        if self.tools.len() > MAX_TOOLS {
            return bad(format!("tools: {} tools; at most {MAX_TOOLS}", self.tools.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tools {
            if !Self::is_tool_name(t) {
                return bad(format!(
                    "tools: {t:?} cannot be a function name (1 to 64 of a-z, A-Z, 0-9, _ and -)"
                ));
            }
            if !seen.insert(t) {
                return bad(format!("tools: {t:?} is named twice"));
            }
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return bad(format!("temperature: {t} is not within 0..=2"));
        }
        if self.max_tokens == Some(0) {
            return bad("max_tokens: 0".into());
        }
        Ok(())
    }

    /// Whether `name` can be a function's name: the names OpenAI's API takes
    /// (`^[a-zA-Z0-9_-]{1,64}$`); the other servers are no stricter.
    pub fn is_tool_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    /// `<endpoint>/chat/completions`.
    pub fn completions_url(&self) -> String {
        format!("{}/chat/completions", self.endpoint.trim_end_matches('/'))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
endpoint = "http://127.0.0.1:11434/v1"
model = "llama3.2"
api_key_env = "OPENAI_API_KEY"
system = "You add numbers."
tools = ["sum", "clock"]
max_steps = 4
temperature = 0.2
max_tokens = 256
"#;

    #[test]
    fn a_whole_file_parses() {
        let f = AgentFile::parse(GOOD).unwrap();
        assert_eq!(f.model, "llama3.2");
        assert_eq!(f.tools, ["sum", "clock"]);
        assert_eq!(f.max_steps, 4);
        assert_eq!(f.completions_url(), "http://127.0.0.1:11434/v1/chat/completions");
        let f = AgentFile::parse("endpoint = \"https://h.example/v1/\"\nmodel = \"m\"\n").unwrap();
        assert_eq!(f.max_steps, 8);
        assert!(f.tools.is_empty() && f.api_key_env.is_none());
        assert_eq!(f.completions_url(), "https://h.example/v1/chat/completions");
    }

    #[test]
    fn bad_files_name_the_key() {
        for (text, needle) in [
            ("model = \"m\"", "endpoint"),
            ("endpoint = \"ftp://x\"\nmodel = \"m\"", "endpoint"),
            ("endpoint = \"http://x\"\nmodel = \"\"", "model"),
            ("endpoint = \"http://x\"\nmodel = \"m\"\nmax_step = 3", "max_step"),
            (
                "endpoint = \"http://x\"\nmodel = \"m\"\nmax_steps = 0",
                "max_steps",
            ),
            (
                "endpoint = \"http://x\"\nmodel = \"m\"\nmax_steps = \"a\"",
                "max_steps",
            ),
            (
                "endpoint = \"http://x\"\nmodel = \"m\"\ntools = [\"a b\"]",
                "tools",
            ),
            (
                "endpoint = \"http://x\"\nmodel = \"m\"\ntools = [\"a\", \"a\"]",
                "twice",
            ),
            (
                "endpoint = \"http://x\"\nmodel = \"m\"\ntemperature = 9.0",
                "temperature",
            ),
            (
                "endpoint = \"http://x\"\nmodel = \"m\"\napi_key_env = \"A=B\"",
                "api_key_env",
            ),
            ("not toml at all", "agent file"),
        ] {
            let e = AgentFile::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
