//! Resident memory of process trees: VmRSS of each pid and all its descendants, summed, sampled
//! every 100 ms on a thread of its own.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::result::Rss;

/// The parent pid of each process (from `/proc/N/stat`).
fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
        if let Some(ppid) = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        {
            map.insert(pid, ppid);
        }
    }
    map
}

/// The roots and all their descendants that are alive now.
pub fn process_tree(roots: &[u32]) -> BTreeSet<u32> {
    let parents = parents();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &ppid) in &parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut tree = BTreeSet::new();
    let mut stack: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|p| parents.contains_key(p))
        .collect();
    while let Some(pid) = stack.pop() {
        if tree.insert(pid) {
            if let Some(c) = children.get(&pid) {
                stack.extend(c);
            }
        }
    }
    tree
}

/// VmRSS of one process in KiB (0 if it is gone or a kernel thread).
pub fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Summed VmRSS of the trees under `roots`, in MiB.
pub fn tree_rss_mib(roots: &[u32]) -> f64 {
    let kib: u64 = process_tree(roots).iter().map(|&p| vm_rss_kib(p)).sum();
    kib as f64 / 1024.0
}

/// Samples the trees under `pids` every 100 ms until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Rss>,
}

impl Sampler {
    pub fn start(pids: Vec<u32>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut rss = Rss {
                pids: pids.clone(),
                ..Rss::default()
            };
            loop {
                let mib = tree_rss_mib(&pids);
                if rss.samples == 0 {
                    rss.start_mib = mib;
                }
                rss.samples += 1;
                rss.peak_mib = rss.peak_mib.max(mib);
                rss.final_mib = mib;
                if flag.load(Ordering::Acquire) {
                    break;
                }
                // Sleep in short steps so that stop() answers quickly.
                for _ in 0..10 {
                    std::thread::sleep(Duration::from_millis(10));
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                }
            }
            rss.peak_mib = round1(rss.peak_mib);
            rss.final_mib = round1(rss.final_mib);
            rss.start_mib = round1(rss.start_mib);
            rss
        });
        Sampler { stop, handle }
    }

    /// Takes a last sample and returns the record.
    pub fn stop(self) -> Rss {
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap_or_default()
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `--pid 1,2 --pid 3` → [1, 2, 3].
pub fn parse_pids(values: &[String]) -> anyhow::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for v in values {
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            pids.push(
                p.parse()
                    .map_err(|_| anyhow::anyhow!("--pid: '{p}' is not a process id"))?,
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_tree_has_memory() {
        let me = std::process::id();
        assert!(process_tree(&[me]).contains(&me));
        assert!(tree_rss_mib(&[me]) > 0.5);
        assert_eq!(tree_rss_mib(&[u32::MAX - 1]), 0.0);
    }

    #[test]
    fn sampler_sees_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id();
        assert!(process_tree(&[me]).contains(&child.id()));
        let s = Sampler::start(vec![me]);
        std::thread::sleep(Duration::from_millis(150));
        let rss = s.stop();
        let _ = child.kill();
        let _ = child.wait();
        assert!(rss.samples >= 2);
        assert!(rss.peak_mib >= rss.final_mib.min(rss.start_mib));
    }

    #[test]
    fn pid_lists() {
        assert_eq!(
            parse_pids(&["3,1".into(), " 2 ".into(), "1".into()]).expect("pids"),
            vec![1, 2, 3]
        );
        assert!(parse_pids(&["x".into()]).is_err());
    }
}
