//! What the bench reads from `/proc`: peak memory, and CPU time of this process and of the
//! local PostgreSQL server's processes.
//!
//! The server's CPU is the sum over the measured server's processes: its postmaster (the
//! parent of a backend serving the bench) and the postmaster's children (the backends serving
//! the bench's connections, the WAL writer, the checkpointer), sampled before and after the
//! measured part; a process that exits in between takes its time with it (the bench's
//! connections stay open throughout, so what is lost is small). Other PostgreSQL servers on the
//! machine are not counted. The figure means something only when the server is local and
//! nothing else uses it during the bench. Where there is no `/proc`, every figure is absent.

use std::collections::HashMap;

/// Clock ticks per second of `/proc/*/stat` times (Linux's `USER_HZ`, 100 on every common
/// configuration).
const TICKS_PER_SECOND: f64 = 100.0;

/// The process's peak resident set (VmHWM), in KiB; 0 where /proc is not there.
pub fn peak_rss_kb() -> u64 {
    peak_rss_kb_at("/proc/self/status")
}

/// Another process's peak resident set, in KiB; 0 where it cannot be read.
pub fn peak_rss_kb_of(pid: u32) -> u64 {
    peak_rss_kb_at(&format!("/proc/{pid}/status"))
}

fn peak_rss_kb_at(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) this process has used so far.
pub fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_ticks(&stat).map(|ticks| ticks as f64 / TICKS_PER_SECOND)
}

/// The postmaster of the local server whose backend is `backend`: the backend's parent.
pub fn postmaster_of(backend: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{backend}/stat")).ok()?;
    parent_of(&stat)
}

/// CPU ticks of a local PostgreSQL server's processes, by pid.
#[derive(Debug, Default)]
pub struct ServerCpu(HashMap<u32, u64>);

impl ServerCpu {
    /// The processes of the server whose postmaster is `postmaster`; `None` where /proc
    /// cannot be read.
    pub fn sample(postmaster: u32) -> Option<ServerCpu> {
        let mut ticks = HashMap::new();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let of_server = pid == postmaster || parent_of(&stat) == Some(postmaster);
            if of_server && let Some(t) = cpu_ticks(&stat) {
                ticks.insert(pid, t);
            }
        }
        Some(ServerCpu(ticks))
    }

    /// CPU seconds the server's processes used since `earlier` (a process that started in
    /// between counts whole).
    pub fn seconds_since(&self, earlier: &ServerCpu) -> f64 {
        let ticks: u64 = self
            .0
            .iter()
            .map(|(pid, &now)| now.saturating_sub(earlier.0.get(pid).copied().unwrap_or(0)))
            .sum();
        ticks as f64 / TICKS_PER_SECOND
    }
}

/// The parent pid (field 4) of a `/proc/PID/stat` line.
fn parent_of(stat: &str) -> Option<u32> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, counted after the command.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times_past_a_command_with_spaces_and_parentheses() {
        let stat = "4242 (postgres: a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 1 0";
        assert_eq!(parent_of(stat), Some(1));
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
    }
}
