//! PEP 723 inline script metadata: the `# /// script` block, its `dependencies` and
//! `requires-python`, and the checks that make a malformed block a clear job error
//! (exit 2) rather than a script that silently runs without its dependencies.
//!
//! The block is found exactly as the PEP's reference regex finds it:
//! `(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$`:
//! an opening line `# /// TYPE`, one or more comment lines that are `#` alone or start
//! with `# `, and the *last* `# ///` line of that run of comment lines as the closing
//! line. Two deviations, both stricter or friendlier, never looser: an opening
//! `# /// script` line without a closing line is an error (the regex would ignore it,
//! and the script would run without its dependencies), and a trailing `\r` is dropped
//! from each line first, so a script saved with CRLF line endings is read the same.

/// What a script's `# /// script` block declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptMetadata {
    /// PEP 508 requirement strings, as written.
    pub dependencies: Vec<String>,
    /// The `requires-python` version specifier, if any.
    pub requires_python: Option<String>,
}

/// Why a script's metadata block was refused (the job fails with exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PEP 723 metadata: {0}")]
pub struct MetadataError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, MetadataError> {
    Err(MetadataError(msg.into()))
}

/// The opening line's TYPE, if `line` is `# /// TYPE`.
fn opening_type(line: &str) -> Option<&str> {
    let t = line.strip_prefix("# /// ")?;
    (!t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(t)
}

/// Whether `line` may be inside a block: `#` alone, or `# ` followed by anything.
fn is_content(line: &str) -> bool {
    line == "#" || line.starts_with("# ")
}

/// Finds and parses the script's `# /// script` block. `Ok(None)` when there is none.
pub fn parse(source: &str) -> Result<Option<ScriptMetadata>, MetadataError> {
    let lines: Vec<&str> = source
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    // The regex needs a line break after the opening line and after every content
    // line; the closing line may be the file's last.
    let mut found: Option<(usize, String)> = None;
    let mut i = 0;
    while i < lines.len() {
        let Some(kind) = opening_type(lines[i]) else {
            i += 1;
            continue;
        };
        // The run of comment lines after the opening one; its last `# ///` closes the
        // block, provided at least one content line comes before it.
        let mut close = None;
        let mut j = i + 1;
        while j < lines.len() && is_content(lines[j]) {
            if lines[j] == "# ///" && j > i + 1 {
                close = Some(j);
            }
            j += 1;
        }
        match close {
            Some(end) => {
                if kind == "script" {
                    if let Some((first, _)) = &found {
                        return err(format!(
                            "more than one `# /// script` block (lines {} and {})",
                            first + 1,
                            i + 1
                        ));
                    }
                    let content: String = lines[i + 1..end]
                        .iter()
                        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(&l[1..])))
                        .collect();
                    found = Some((i, content));
                }
                i = end + 1;
            }
            None if kind == "script" => {
                return err(format!(
                    "the `# /// script` block opened on line {} has no closing `# ///` line",
                    i + 1
                ));
            }
            None => i += 1,
        }
    }
    let Some((line, content)) = found else {
        return Ok(None);
    };
    parse_toml(&content).map(Some).map_err(|e| {
        MetadataError(format!(
            "in the `# /// script` block on line {}: {}",
            line + 1,
            e.0
        ))
    })
}

fn parse_toml(content: &str) -> Result<ScriptMetadata, MetadataError> {
    let table: toml::Table = match toml::from_str(content) {
        Ok(t) => t,
        // toml's messages span several lines with a caret diagram; the first says it.
        Err(e) => {
            let msg = e.message().trim().to_string();
            return err(format!("not valid TOML: {msg}"));
        }
    };
    let mut meta = ScriptMetadata::default();
    for (key, value) in &table {
        match key.as_str() {
            "dependencies" => {
                let Some(items) = value.as_array() else {
                    return err("`dependencies` must be an array of strings");
                };
                for item in items {
                    let Some(s) = item.as_str() else {
                        return err("`dependencies` must be an array of strings");
                    };
                    meta.dependencies.push(s.to_string());
                }
            }
            "requires-python" => {
                let Some(s) = value.as_str() else {
                    return err("`requires-python` must be a string");
                };
                meta.requires_python = Some(s.to_string());
            }
            // PEP 723 reserves `[tool]` for tools; none of its settings apply here.
            "tool" => {
                if !value.is_table() {
                    return err("`tool` must be a table");
                }
            }
            // A typo such as `dependancies` would otherwise run the script without its
            // dependencies and fail later with a confusing ImportError.
            other => {
                return err(format!(
                    "unknown key `{other}` (expected dependencies, requires-python or tool)"
                ));
            }
        }
    }
    Ok(meta)
}

/// A checked, normalised dependency: the cache key is built from these, and only
/// these are handed to uv.
///
/// Direct references (`name @ URL`) are refused: `pkg @ file:///etc/...` would make
/// the installer read host paths into an environment the tool then sees, and an
/// arbitrary URL bypasses the index the operator chose. Only named requirements,
/// resolved from the configured index, are installed.
pub fn normalise_dependency(dep: &str) -> Result<String, MetadataError> {
    let dep = dep.trim();
    if dep.is_empty() {
        return err("a dependency is an empty string");
    }
    if dep.starts_with('-') {
        // uv would read `--index-url=...` or `-r file` as an option.
        return err(format!("dependency `{dep}` looks like an installer option"));
    }
    if dep.chars().any(|c| c.is_control()) {
        return err(format!("dependency {dep:?} contains control characters"));
    }
    let name_len = dep
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .unwrap_or(dep.len());
    let (name, rest) = dep.split_at(name_len);
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        return err(format!("dependency `{dep}` does not start with a package name"));
    }
    // The marker part (after `;`) may legitimately contain `@` in a quoted string;
    // only the requirement part can be a direct reference.
    let requirement = rest.split(';').next().unwrap_or("");
    if requirement.contains('@') || requirement.contains("://") {
        return err(format!(
            "dependency `{dep}` is a direct reference (name @ URL); only packages from the index are installed"
        ));
    }
    // PEP 503 name normalisation: lower case, runs of `-_.` as one `-`.
    let mut norm = String::new();
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep {
                norm.push('-');
                sep = false;
            }
            norm.push(c.to_ascii_lowercase());
        }
    }
    // Whitespace carries no meaning outside marker keywords (`and`, `in`), so runs
    // of it become one space and it goes entirely around the version part.
    let rest = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    let (spec, marker) = match rest.split_once(';') {
        Some((s, m)) => (s.replace(' ', ""), format!(" ; {}", m.trim())),
        None => (rest.replace(' ', ""), String::new()),
    };
    Ok(format!("{norm}{spec}{marker}"))
}

/// The normalised, sorted, de-duplicated dependency set.
pub fn dependency_set(deps: &[String]) -> Result<Vec<String>, MetadataError> {
    let mut v = deps
        .iter()
        .map(|d| normalise_dependency(d))
        .collect::<Result<Vec<_>, _>>()?;
    v.sort();
    v.dedup();
    Ok(v)
}

/// Whether a final-release `version` (`3.11.7`) satisfies a PEP 440 specifier set
/// (`>=3.10, <4`, `~=3.11`, `==3.11.*`). `Err` names what cannot be read.
///
/// Covers what `requires-python` uses in practice: release segments with the
/// operators `==`, `!=` (with `.*`), `<`, `<=`, `>`, `>=`, `~=` and `===`.
/// Pre-release, post-release and local segments are refused rather than guessed at.
pub fn python_satisfies(version: &str, spec: &str) -> Result<bool, MetadataError> {
    let v = release(version)
        .ok_or_else(|| MetadataError(format!("cannot read the interpreter version {version:?}")))?;
    let bad = || {
        MetadataError(format!(
            "`requires-python = \"{spec}\"` is not a version specifier"
        ))
    };
    if spec.trim().is_empty() {
        return Err(bad());
    }
    for clause in spec.split(',') {
        let clause = clause.trim();
        let op_len = clause
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .ok_or_else(bad)?;
        let (op, rest) = clause.split_at(op_len);
        let rest = rest.trim();
        let ok = if op == "===" {
            rest == version
        } else if let Some(prefix) = rest.strip_suffix(".*") {
            let p = release(prefix).ok_or_else(bad)?;
            // Prefix matching on the zero-padded release (`3.11.*` matches 3.11 and 3.11.7).
            let matches = (0..p.len()).all(|i| v.get(i).copied().unwrap_or(0) == p[i]);
            match op {
                "==" => matches,
                "!=" => !matches,
                _ => return Err(bad()),
            }
        } else {
            let w = release(rest).ok_or_else(bad)?;
            let ord = cmp_release(&v, &w);
            use std::cmp::Ordering::*;
            match op {
                "==" => ord == Equal,
                "!=" => ord != Equal,
                "<" => ord == Less,
                "<=" => ord != Greater,
                ">" => ord == Greater,
                ">=" => ord != Less,
                "~=" => {
                    if w.len() < 2 {
                        return Err(bad());
                    }
                    let p = &w[..w.len() - 1];
                    ord != Less && cmp_release(&v[..p.len().min(v.len())], p) == Equal
                }
                _ => return Err(bad()),
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn release(s: &str) -> Option<Vec<u64>> {
    let s = s.trim();
    let s = s.strip_prefix('v').unwrap_or(s);
    if s.is_empty() {
        return None;
    }
    s.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

/// Compares release segments, padding the shorter with zeros (`3.11 == 3.11.0`).
fn cmp_release(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(i).copied().unwrap_or(0))
        })
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pep_example_parses() {
        let src = "# /// script\n# requires-python = \">=3.11\"\n# dependencies = [\n#   \"requests<3\",\n#   \"rich\",\n# ]\n# ///\n\nimport requests\n";
        let m = parse(src).unwrap().unwrap();
        assert_eq!(m.dependencies, vec!["requests<3", "rich"]);
        assert_eq!(m.requires_python.as_deref(), Some(">=3.11"));
    }

    #[test]
    fn no_block_is_no_metadata_and_other_types_are_ignored() {
        assert_eq!(parse("print(1)\n").unwrap(), None);
        assert_eq!(parse("# /// pyproject\n# x = 1\n# ///\n").unwrap(), None);
        // Not a block: no space after the hashes, trailing text on the opening line.
        assert_eq!(parse("#/// script\n# x\n# ///\n").unwrap(), None);
    }

    #[test]
    fn the_last_closing_line_of_the_run_closes_the_block() {
        let src = "# /// script\n# dependencies = [\"a\"]\n# ///\n# tool = {}\n# ///\nx = 1\n";
        // Greedy, like the regex: the second `# ///` closes; `# ///` inside is TOML
        // text `///`, which is invalid TOML.
        let e = parse(src).unwrap_err();
        assert!(e.to_string().contains("not valid TOML"), "{e}");
        let ok = "# /// script\n# dependencies = [\"a\"]\n# ///\n\n# ///\n";
        assert_eq!(parse(ok).unwrap().unwrap().dependencies, vec!["a"]);
    }

    #[test]
    fn malformed_blocks_are_named() {
        for (src, want) in [
            ("# /// script\n# dependencies = [\"a\"]\nimport a\n", "no closing"),
            (
                "# /// script\n# dependencies = \"a\"\n# ///\n",
                "array of strings",
            ),
            ("# /// script\n# dependencies = [1]\n# ///\n", "array of strings"),
            ("# /// script\n# requires-python = 3\n# ///\n", "must be a string"),
            (
                "# /// script\n# dependancies = []\n# ///\n",
                "unknown key `dependancies`",
            ),
            ("# /// script\n# dependencies = [\n# ///\n", "not valid TOML"),
            (
                "# /// script\n# dependencies = []\n# ///\n\n# /// script\n# dependencies = []\n# ///\n",
                "more than one",
            ),
        ] {
            let e = parse(src).unwrap_err().to_string();
            assert!(e.contains(want), "{src:?}: {e}");
        }
    }

    #[test]
    fn crlf_scripts_read_the_same() {
        let src = "# /// script\r\n# dependencies = [\"a\"]\r\n# ///\r\n";
        assert_eq!(parse(src).unwrap().unwrap().dependencies, vec!["a"]);
    }

    #[test]
    fn dependencies_are_normalised_and_direct_references_refused() {
        assert_eq!(
            normalise_dependency(" Python_Slugify >= 8.0 ").unwrap(),
            "python-slugify>=8.0"
        );
        assert_eq!(
            normalise_dependency("tabulate[widechars]  ==0.9 ;  python_version  >= '3.8'").unwrap(),
            "tabulate[widechars]==0.9 ; python_version >= '3.8'"
        );
        for bad in [
            "x @ file:///etc",
            "x@https://e/x.whl",
            "--index-url=http://x",
            "",
            ">=1",
        ] {
            assert!(normalise_dependency(bad).is_err(), "{bad}");
        }
        let set = dependency_set(&["B".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(set, vec!["a", "b"]);
    }

    #[test]
    fn requires_python_specifiers() {
        for (spec, want) in [
            (">=3.10", true),
            (">=3.12", false),
            (">=3.8, <4", true),
            ("~=3.11", true),
            ("~=3.11.8", false),
            ("==3.11.*", true),
            ("==3.1.*", false),
            ("!=3.11.*", false),
            ("<3.11.7", false),
            ("<=3.11.7", true),
            ("==3.11", false),
            ("==3.11.7", true),
        ] {
            assert_eq!(python_satisfies("3.11.7", spec).unwrap(), want, "{spec}");
        }
        assert!(python_satisfies("3.11.7", "banana").is_err());
        assert!(python_satisfies("3.11.7", "").is_err());
    }
}
