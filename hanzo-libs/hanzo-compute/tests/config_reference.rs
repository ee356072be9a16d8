//! The configuration reference (`docs/configuration.md`) and the sample file
//! (`hanzo-node.toml.example`) against the code. The list of keys comes from
//! `Config::default()` itself, so a key added to `config.rs` without a row in the
//! reference, or a default changed in one place only, fails here.

use hanzo_compute::Config;
use std::path::{Path, PathBuf};

fn repo_file(rel: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

/// Every leaf key of the configuration, as (`compute.wasm`, `max_memory_mb`, default).
fn keys() -> Vec<(String, String, toml::Value)> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String, toml::Value)>) {
        for (k, v) in table {
            match v {
                toml::Value::Table(sub) => {
                    let section = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&section, sub, out);
                }
                _ => {
                    assert!(!prefix.is_empty(), "a key outside every section: {k}");
                    out.push((prefix.to_string(), k.clone(), v.clone()));
                }
            }
        }
    }
    // The machine's memory and cores are unset until asked; written in, they are keys.
    let mut config = Config::default();
    config.compute.resources = config.compute.resources.resolved();
    let defaults = toml::Table::try_from(config).expect("the defaults serialise");
    let mut out = Vec::new();
    walk("", &defaults, &mut out);
    assert!(
        out.len() > 40,
        "expected every key of the configuration, got {}",
        out.len()
    );
    out
}

/// The environment variable that overrides `section.key` (config.rs's `apply_env`).
fn env_name(section: &str, key: &str) -> String {
    format!("HANZO_{}_{}", section.replace('.', "_"), key).to_ascii_uppercase()
}

/// The example with every `# key = value` line uncommented.
fn uncommented(example: &str) -> String {
    example
        .lines()
        .map(|line| {
            let Some(rest) = line.strip_prefix("# ") else {
                return line.to_string();
            };
            let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
            if is_key {
                rest.to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn the_example_parses_to_the_defaults() {
    let (path, text) = repo_file("hanzo-node.toml.example");
    let origin = path.display().to_string();
    let parsed = Config::from_toml(&text, &origin, no_env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        parsed,
        Config::default(),
        "the example as shipped must give the defaults"
    );

    // Uncommented, it sets every key, each to its default (but data_dir, whose default
    // depends on $HANZO_HOME / $HOME and is shown as an absolute path, and the memory and
    // cores of [compute.resources], whose defaults are the machine's and are shown as an
    // example).
    let all = uncommented(&text);
    let mut parsed =
        Config::from_toml(&all, &origin, no_env()).unwrap_or_else(|e| panic!("uncommented: {e}"));
    assert!(
        parsed.node.data_dir.is_absolute(),
        "{}",
        parsed.node.data_dir.display()
    );
    parsed.node.data_dir = Config::default().node.data_dir;
    let res = &mut parsed.compute.resources;
    assert!(
        res.total_memory_gb.is_some_and(|m| m > 0) && res.total_cpu_cores.is_some_and(|c| c > 0),
        "the example's resources: {res:?}"
    );
    // Unset, they are the machine's.
    (res.total_memory_gb, res.total_cpu_cores) = (None, None);
    assert_eq!(
        parsed,
        Config::default(),
        "every key in the example must be at its default"
    );

    let table: toml::Table = toml::from_str(&all).unwrap();
    for (section, key, _) in keys() {
        let mut v = &toml::Value::Table(table.clone());
        for part in section.split('.') {
            v = v
                .get(part)
                .unwrap_or_else(|| panic!("the example has no [{section}]"));
        }
        assert!(
            v.get(&key).is_some(),
            "the example does not show [{section}] {key} (add `# {key} = <default>`)"
        );
    }
}

/// The rows of the reference's table under the heading naming `[section]`:
/// (key, cells after the key).
fn rows(doc: &str, section: &str) -> Option<Vec<(String, Vec<String>)>> {
    let heading = format!("## `[{section}]`");
    let start = doc.lines().position(|l| l.trim_end() == heading)?;
    let mut out = Vec::new();
    for line in doc.lines().skip(start + 1) {
        if line.starts_with("## ") {
            break;
        }
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<String> = row.split(" | ").map(|c| c.trim().to_string()).collect();
        let key = cells[0].trim_end_matches('`').to_string();
        out.push((key, cells[1..].to_vec()));
    }
    Some(out)
}

/// The first `code` span of a cell.
fn first_code(cell: &str) -> Option<&str> {
    let start = cell.find('`')? + 1;
    let len = cell[start..].find('`')?;
    Some(&cell[start..start + len])
}

#[test]
fn the_reference_describes_every_key_with_its_default_and_variable() {
    let (_, doc) = repo_file("docs/configuration.md");
    let keys = keys();
    let mut sections: Vec<&str> = keys.iter().map(|(s, _, _)| s.as_str()).collect();
    sections.dedup();
    for (section, key, default) in &keys {
        let rows = rows(&doc, section)
            .unwrap_or_else(|| panic!("docs/configuration.md has no heading ## `[{section}]`"));
        let (_, cells) = rows
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("docs/configuration.md: [{section}] has no row for `{key}`"));
        assert!(
            cells.len() >= 4,
            "[{section}] {key}: expected type, default, variable, description: {cells:?}"
        );
        let (ty, default_cell, var) = (&cells[0], &cells[1], &cells[2]);
        // Measured on the machine (`hanzo_compute::fingerprint`): documented as the rule.
        let machines = matches!(
            (section.as_str(), key.as_str()),
            ("compute.resources", "total_memory_gb" | "total_cpu_cores")
        );

        let kind_ok = match default {
            toml::Value::String(_) => ty.starts_with("string") || ty.starts_with("path"),
            toml::Value::Integer(_) => ty.starts_with("integer"),
            toml::Value::Boolean(_) => ty.starts_with("boolean"),
            toml::Value::Array(_) => ty.starts_with("list of"),
            other => panic!(
                "[{section}] {key}: a {} value; teach this test its type",
                other.type_str()
            ),
        };
        assert!(
            kind_ok,
            "[{section}] {key}: documented as '{ty}', but the default is {default}"
        );

        assert_eq!(
            var,
            &format!("`{}`", env_name(section, key)),
            "[{section}] {key}: the variable"
        );

        if machines {
            assert!(
                default_cell.starts_with("this machine's"),
                "[{section}] {key}'s default: {default_cell}"
            );
            continue;
        }
        let shown = first_code(default_cell)
            .unwrap_or_else(|| panic!("[{section}] {key}: no `default` in '{default_cell}'"));
        if (section.as_str(), key.as_str()) == ("node", "data_dir") {
            // Depends on the environment: documented as the rule, not a value.
            assert_eq!(shown, "$HANZO_HOME", "[node] data_dir's default");
            continue;
        }
        let parsed: toml::Table = toml::from_str(&format!("v = {shown}"))
            .unwrap_or_else(|e| panic!("[{section}] {key}: default `{shown}` is not a TOML value: {e}"));
        assert_eq!(&parsed["v"], default, "[{section}] {key}: the documented default");
    }

    // And nothing documented that the code does not accept.
    for section in sections {
        for (key, _) in rows(&doc, section).unwrap() {
            assert!(
                keys.iter().any(|(s, k, _)| s == section && *k == key),
                "docs/configuration.md documents [{section}] {key}, which the configuration does not have"
            );
        }
    }
}

#[test]
fn the_variables_the_reference_names_really_override() {
    // The naming rule the reference states, applied by the real parser to every key:
    // a variable set to a non-default value of the right type changes exactly that key.
    for (section, key, default) in keys() {
        let value = match &default {
            toml::Value::String(_) if key == "data_dir" || key == "bubblewrap_path" => "/srv/x".to_string(),
            toml::Value::String(_) => continue, // many strings are validated enums; the rule is the same
            toml::Value::Integer(i) => (i + 1).to_string(),
            toml::Value::Boolean(b) => (!b).to_string(),
            toml::Value::Array(_) if key == "mount_roots" => "/srv/a,/srv/b".to_string(),
            toml::Value::Array(_) if key == "install_roots" => "/opt/mcp,/opt/node".to_string(),
            toml::Value::Array(_) if key == "enabled_runtimes" || key == "offer_runtimes" => {
                "wasm, docker".to_string()
            }
            // Checked at load: multiaddrs start with `/`, peer ids look like base58 ones.
            toml::Value::Array(_) if ["listen", "bootstrap", "external_addrs"].contains(&key.as_str()) => {
                "/ip4/127.0.0.1/tcp/1,/ip6/::1/tcp/2".to_string()
            }
            toml::Value::Array(_) if key == "allow_peers" || key == "deny_peers" => {
                "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA".to_string()
            }
            toml::Value::Array(_) if key == "allowed_endpoints" => {
                "http://127.0.0.1:11434/v1,https://llm.example/v1".to_string()
            }
            toml::Value::Array(_) if key == "allowed_urls" => {
                "http://a.example/mcp,https://b.example".to_string()
            }
            toml::Value::Array(_) => "a.example,b.example".to_string(),
            _ => continue,
        };
        let var = env_name(&section, &key);
        let c = Config::from_toml("", "test", vec![(var.clone(), value.clone())])
            .unwrap_or_else(|e| panic!("{var}={value}: {e}"));
        let got = toml::Table::try_from(c).unwrap();
        let mut v = &toml::Value::Table(got);
        for part in section.split('.') {
            v = &v[part];
        }
        assert_ne!(
            &v[&key], &default,
            "{var}={value} did not change [{section}] {key}"
        );
    }
}
