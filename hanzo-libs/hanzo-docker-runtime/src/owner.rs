//! Which process created a tool container, so that reaping removes only the orphans of
//! processes that are gone.
//!
//! Every `hanzo-node` process on a data directory has the same node id: a `serve` and a
//! one-off `hanzo-node run docker ...` next to it. Reaping by node id alone made the
//! one-off run remove the serving node's live containers. A container is labelled
//! with its creator (`<boot id>:<pid>:<start time>`, the start time in clock ticks since
//! boot, so a reused pid is not mistaken for it), and a creator that still runs on this
//! host keeps its containers.

use std::sync::OnceLock;

/// This process, as a container's `hanzo.owner` label names it.
pub(crate) fn this_process() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        let pid = std::process::id();
        format!(
            "{}:{pid}:{}",
            boot_id().unwrap_or_default(),
            start_time(pid).unwrap_or_default()
        )
    })
}

/// Whether the process a label names still runs on this host. Blocking (reads /proc).
pub(crate) fn is_alive(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(boot), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else { return false };
    // Another boot (or another host sharing the daemon): that process is not this one.
    if boot.is_empty() || boot_id().as_deref() != Some(boot) {
        return false;
    }
    start_time(pid).is_some_and(|t| t.to_string() == start)
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from
    // the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_an_exited_one_is_not() {
        assert!(is_alive(this_process()), "{}", this_process());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_time(pid);
        child.wait().unwrap();
        let label = format!("{}:{pid}:{}", boot_id().unwrap(), start.unwrap_or(1));
        assert!(!is_alive(&label), "{label}");
        // A live pid with another start time is a reused pid, not the creator.
        let me = std::process::id();
        assert!(!is_alive(&format!("{}:{me}:1", boot_id().unwrap())));
        assert!(!is_alive("garbage"));
        assert!(!is_alive(&format!("other-boot:{me}:{}", start_time(me).unwrap())));
    }
}
