//! What this machine's `/proc` says about another process: whether it still runs.
//!
//! A worker records, when it registers, a [`ProcessMark`]: the PID namespace it sees, its user
//! and its start time. A process of the same namespace and user as the one looking is always
//! listed in `/proc` while it runs (even where `/proc` hides other users' processes), and no
//! two processes of a namespace share a pid and a start time, so for such a worker "its pid is
//! gone, a zombie, or another process's" is certain at once. Any other worker (another
//! container under the same host name, another user, a row written without a mark) is judged
//! only after it has also stopped reporting (see the `workers` module).

use std::os::unix::fs::MetadataExt;

/// A running process as this machine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessMark {
    /// The PID namespace it sees (`/proc/PID/ns/pid`, e.g. `pid:[4026531836]`).
    namespace: String,
    uid: u32,
    /// Clock ticks from boot to its start (`/proc/PID/stat`, field 22).
    started: u64,
}

impl ProcessMark {
    /// The mark of process `pid`, or `None` when it cannot be read (no `/proc`, no such process,
    /// one that has exited, another user's namespace link).
    pub fn of(pid: i64) -> Option<Self> {
        let namespace = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
        let uid = std::fs::metadata(format!("/proc/{pid}")).ok()?.uid();
        let State::Running { started } = state(pid) else {
            return None;
        };
        Some(ProcessMark {
            namespace: namespace.to_str()?.to_owned(),
            uid,
            started,
        })
    }

    /// This process's mark, read once: it never changes while the process runs.
    pub fn of_this_process() -> Option<&'static Self> {
        static MARK: std::sync::OnceLock<Option<ProcessMark>> = std::sync::OnceLock::new();
        MARK.get_or_init(|| Self::of(i64::from(std::process::id())))
            .as_ref()
    }

    /// The mark as stored: namespace, user and start time, separated by spaces.
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.namespace, self.uid, self.started)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let mark = ProcessMark {
            namespace: parts.next()?.to_owned(),
            uid: parts.next()?.parse().ok()?,
            started: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(mark)
    }

    /// Whether the process this mark was taken of has ended, as `looking` (the process that
    /// asks) can tell for certain: `None` when it cannot (another namespace or user).
    pub fn ended(&self, pid: i64, looking: &ProcessMark) -> Option<bool> {
        if self.namespace != looking.namespace || self.uid != looking.uid {
            return None;
        }
        match state(pid) {
            State::Gone => Some(true),
            State::Running { started } => Some(started != self.started),
            State::Unknown => None,
        }
    }
}

enum State {
    /// No such process, or only its zombie (killed, not yet reaped by its parent).
    Gone,
    Running {
        started: u64,
    },
    /// `/proc` could not be read for another reason.
    Unknown,
}

fn state(pid: i64) -> State {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return State::Gone,
        Err(_) => return State::Unknown,
    };
    // The fields follow the command name, which is in parentheses and may hold spaces: the
    // state is field 3, the start time field 22.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return State::Unknown;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    match (fields.first(), fields.get(19).and_then(|f| f.parse().ok())) {
        (Some(&("Z" | "X")), _) => State::Gone,
        (Some(_), Some(started)) => State::Running { started },
        _ => State::Unknown,
    }
}

/// Whether no process `pid` runs on this machine: none exists, or only its zombie.
pub fn process_gone(pid: i64) -> bool {
    matches!(state(pid), State::Gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn until(mut check: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if check() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_killed_unreaped_process_is_gone_and_this_one_is_not() {
        assert!(!process_gone(i64::from(std::process::id())));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i64::from(child.id());
        assert!(!process_gone(pid));
        child.kill().unwrap();
        // Killed, not yet reaped: a zombie until `wait`.
        assert!(until(|| process_gone(pid)), "a zombie counts as gone");
        child.wait().unwrap();
        assert!(process_gone(pid));
    }

    #[test]
    fn a_mark_tells_a_running_process_from_an_ended_or_another_one() {
        let me = ProcessMark::of_this_process()
            .expect("this machine has /proc")
            .clone();
        assert_eq!(ProcessMark::decode(&me.encode()), Some(me.clone()));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i64::from(child.id());
        let mark = ProcessMark::of(pid).unwrap();
        assert_eq!(mark.ended(pid, &me), Some(false));
        // The same pid started at another time is another process.
        let reused = ProcessMark {
            started: mark.started + 1,
            ..mark.clone()
        };
        assert_eq!(reused.ended(pid, &me), Some(true));
        // Seen from another namespace or by another user, nothing is certain.
        let elsewhere = ProcessMark {
            namespace: "pid:[1]".to_owned(),
            ..me.clone()
        };
        assert_eq!(mark.ended(pid, &elsewhere), None);
        let other_user = ProcessMark {
            uid: me.uid + 1,
            ..me.clone()
        };
        assert_eq!(mark.ended(pid, &other_user), None);
        child.kill().unwrap();
        assert!(
            until(|| mark.ended(pid, &me) == Some(true)),
            "a zombie has ended"
        );
        child.wait().unwrap();
        assert_eq!(mark.ended(pid, &me), Some(true));
        assert_eq!(ProcessMark::of(pid), None);
        assert_eq!(ProcessMark::decode("pid:[1] x 3"), None);
        assert_eq!(ProcessMark::decode("pid:[1] 0 3 4"), None);
    }
}
