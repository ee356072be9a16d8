//! Fault injection for tests (CONTRACTS §8): a node that lies, one that drops its
//! results, one that stalls. Only a binary built with the cargo feature `failpoints`
//! has them; it reads `FAILPOINTS` (the `fail` crate's syntax, `name=actions;…`) at
//! start. Without the feature [`hit`] is a constant `false` that the compiler removes
//! with the code it guards, and neither the points nor the `fail` crate exist.

/// The fail points there are, with what each makes the node do when it fires.
pub const POINTS: [(&str, &str); 4] = [
    (
        CORRUPT_OUTPUT,
        "alter every output computed for a peer, and sign the altered output (a lying node)",
    ),
    (
        DROP_RESULT,
        "accept a peer's job, run it, and never give the result back",
    ),
    (
        STALL,
        "accept a peer's job and never run it, saying it is running",
    ),
    (
        SWAP_ON,
        "tell the WASM runtime's swap check that swap is on (its reset of instances depends on it)",
    ),
];

/// Alter every output computed for a peer and sign it.
pub const CORRUPT_OUTPUT: &str = "corrupt_output";
/// Never give a peer its result.
pub const DROP_RESULT: &str = "drop_result";
/// Never run a peer's job.
pub const STALL: &str = "stall";
/// Swap is on, as far as the WASM runtime's check can tell.
pub const SWAP_ON: &str = "swap_on";

/// Whether this binary has fail points at all.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Whether the fail point `name` fires now (its action is `return`, with whatever
/// count or probability `FAILPOINTS` gave it). Always `false` without the feature.
#[inline(always)]
pub fn hit(name: &str) -> bool {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |_| ()).is_some()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        false
    }
}

/// Configures the fail points from `spec` (`FAILPOINTS`: `name=actions` separated by
/// `;`), refusing a name that is not one of [`POINTS`] or actions the `fail` crate
/// cannot parse. Returns the points set, for the log. Without the feature nothing is
/// set and a non-empty `spec` is an error, which the node reports as a warning: a
/// production binary must start whatever its environment holds, and stays honest.
pub fn configure(spec: &str) -> Result<Vec<String>, String> {
    let mut set = Vec::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, actions)) = entry.split_once('=') else {
            return Err(format!("FAILPOINTS: '{entry}' is not name=actions"));
        };
        let name = name.trim();
        if !POINTS.iter().any(|(p, _)| *p == name) {
            let names: Vec<_> = POINTS.iter().map(|(p, _)| *p).collect();
            return Err(format!(
                "FAILPOINTS: unknown fail point '{name}' (expected one of: {})",
                names.join(", ")
            ));
        }
        if !ENABLED {
            return Err(
                "FAILPOINTS is set, but this binary was built without the failpoints feature \
                 (cargo build -p hanzo-node --features failpoints)"
                    .into(),
            );
        }
        #[cfg(feature = "failpoints")]
        fail::cfg(name, actions.trim()).map_err(|e| format!("FAILPOINTS: {name}: {e}"))?;
        #[cfg(not(feature = "failpoints"))]
        let _ = actions;
        set.push(entry.to_string());
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_and_malformed_entries_are_refused() {
        assert!(configure("").unwrap().is_empty());
        assert!(
            configure("no_such=return")
                .unwrap_err()
                .contains("unknown fail point 'no_such'")
        );
        assert!(configure("corrupt_output").unwrap_err().contains("name=actions"));
        assert!(!hit(STALL));
    }

    #[cfg(not(feature = "failpoints"))]
    #[test]
    fn without_the_feature_nothing_can_be_set() {
        let e = configure("corrupt_output=return").unwrap_err();
        assert!(e.contains("without the failpoints feature"), "{e}");
        assert!(!hit(CORRUPT_OUTPUT));
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn with_the_feature_a_point_fires_as_configured() {
        assert!(configure("stall=bogus").unwrap_err().contains("stall"));
        configure("drop_result=1*return").unwrap();
        assert!(hit(DROP_RESULT));
        assert!(!hit(DROP_RESULT), "1*return fires once");
    }
}
