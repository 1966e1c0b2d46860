//! Acknowledged means fdatasynced (invariant 3, and what kill -9 cannot show: power loss).
//! A child process appends one request at a time, each its own group, and writes `ACK <n>` to
//! stdout after each acknowledgement, all under `strace`. The trace must show a completed
//! `fdatasync` of sled's data file before every `ACK` write, and at least one per group.
//!
//! The child is this test binary re-run with [`CHILD_DIR`] set, told to run only
//! [`the_fsync_child_appends_one_request_at_a_time`]; without the variable that test does nothing.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{open, request};

/// Set in the child: the data dir it appends to.
const CHILD_DIR: &str = "QZ_FSYNC_CHILD_DIR";
const CHILD_TEST: &str = "the_fsync_child_appends_one_request_at_a_time";
/// Sequential appends, so groups, in the child.
const APPENDS: u64 = 50;
/// Then this many appends of a 1 MiB record each: sled writes those to blob files of their
/// own, which it never fsyncs itself.
const BIG_APPENDS: u64 = 3;
const BIG: usize = 1024 * 1024;

#[test]
fn the_fsync_child_appends_one_request_at_a_time() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let log = open(Path::new(&dir));
    for n in 1..=APPENDS {
        let appended = log
            .append_blocking(request("device:synced", 1))
            .expect("appends");
        assert_eq!(appended.first, n);
        // One write per line, so the trace shows exactly when each acknowledgement left.
        let mut out = std::io::stdout().lock();
        out.write_all(format!("ACK {n}\n").as_bytes())
            .and_then(|()| out.flush())
            .expect("stdout");
    }
    for n in APPENDS + 1..=APPENDS + BIG_APPENDS {
        let mut req = request("device:big", 1);
        req.events[0].event = events::Event::DeviceTagged(events::event::DeviceTagged {
            device_id: "big".into(),
            tags: vec!["x".repeat(BIG)],
        });
        let appended = log.append_blocking(req).expect("appends a 1 MiB record");
        assert_eq!(appended.first, n);
        let mut out = std::io::stdout().lock();
        out.write_all(format!("ACK {n}\n").as_bytes())
            .and_then(|()| out.flush())
            .expect("stdout");
    }
    let s = log.stats();
    println!("STATS {} {} {}", s.groups, s.fdatasyncs, s.events);
    log.close();
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// One finished system call from the trace: `name(args) = result`.
#[derive(Debug)]
struct Call {
    name: String,
    args: String,
    result: String,
}

/// The calls of an `strace -f` trace in the order they finished, with calls that were
/// interrupted by another thread (`<unfinished ...>` … `<... name resumed>`) put back together.
fn finished_calls(trace: &str) -> Vec<Call> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut calls = Vec::new();
    for line in trace.lines() {
        let (pid, rest) = match line.split_once(' ') {
            Some((pid, rest)) if pid.chars().all(|c| c.is_ascii_digit()) => {
                (pid, rest.trim_start())
            }
            _ => ("", line),
        };
        let text = if let Some(start) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_owned(), start.to_owned());
            continue;
        } else if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            let Some(start) = pending.remove(pid) else {
                continue;
            };
            start + tail
        } else {
            rest.to_owned()
        };
        // `name(args)<padding> = result`
        let (Some(open), Some(eq)) = (text.find('('), text.rfind(" = ")) else {
            continue;
        };
        let Some(args) = text[..eq].trim_end().strip_suffix(')') else {
            continue;
        };
        if open >= args.len() {
            continue;
        }
        calls.push(Call {
            name: text[..open].to_owned(),
            args: args[open + 1..].to_owned(),
            result: text[eq + 3..].to_owned(),
        });
    }
    calls
}

fn first_number(s: &str) -> Option<i64> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .next()?
        .parse()
        .ok()
}

#[test]
fn every_acknowledged_group_was_fdatasynced_before_it_was_acknowledged() {
    let Some(strace) = find_on_path("strace") else {
        panic!(
            "strace is not on PATH: this test traces the log's system calls; \
             install it with `apt-get install -y strace` (CI installs it)"
        );
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let trace_path = dir.path().join("trace");
    let data_dir = dir.path().join("data");
    let output = Command::new(strace)
        .args([
            "-f",
            "-s",
            "256",
            "-e",
            "trace=openat,close,write,fdatasync,fsync",
            "-o",
        ])
        .arg(&trace_path)
        .arg(std::env::current_exe().expect("the test binary"))
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, &data_dir)
        .output()
        .expect("strace runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the traced child failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    let stats: Vec<u64> = stdout
        .lines()
        .find_map(|l| l.split_once("STATS ").map(|(_, s)| s.to_owned()))
        .expect("the child printed its stats")
        .split(' ')
        .map(|n| n.parse().expect("a number"))
        .collect();
    let all = APPENDS + BIG_APPENDS;
    assert_eq!(stats, vec![all, all, all], "groups, fdatasyncs, events");

    let trace = std::fs::read_to_string(&trace_path).expect("the trace reads");
    let fdatasyncs = trace.lines().filter(|l| l.contains("fdatasync(")).count() as u64;
    assert!(
        fdatasyncs >= APPENDS,
        "{fdatasyncs} fdatasync calls for {APPENDS} groups"
    );

    // Replay the trace: which descriptors are sled's data file, and how many fdatasyncs of it
    // completed since the last acknowledgement was written. The child appends in sequence, so
    // each group is committed between one acknowledgement and the next.
    // Blob files: sled writes big records (and big pages) to files of their own. Every blob file
    // created before the data file's fdatasync completed may be referenced by the bytes that
    // fdatasync made durable, so it — and the directory naming it — must be fsynced before the
    // next acknowledgement. (Blobs created after it belong to later, unacknowledged writes.)
    let mut data_fds = HashSet::new();
    let mut fd_paths: HashMap<i64, String> = HashMap::new();
    // Created and not yet fsynced, and whether a data fdatasync has completed since.
    let mut unsynced_blobs: HashMap<String, bool> = HashMap::new();
    // Created since the blobs directory was last fsynced, and whether covered by a data sync.
    let mut unsynced_entries: HashMap<String, bool> = HashMap::new();
    let mut blobs_seen = 0u64;
    // The directories sled's files were created in: their entries must be durable before the
    // first acknowledgement (the owner token of `init`), or a power loss takes the files along.
    let log_dir = data_dir.join("log").display().to_string();
    let data_dir_s = data_dir.display().to_string();
    let mut dirs_synced: HashSet<String> = HashSet::new();
    let (mut synced, mut acks) = (0u64, 0u64);
    for call in finished_calls(&trace) {
        match call.name.as_str() {
            "openat" => {
                let path = call.args.split('"').nth(1).unwrap_or_default().to_owned();
                if let Some(fd) = first_number(&call.result).filter(|fd| *fd >= 0) {
                    if path.ends_with("/log/db") {
                        data_fds.insert(fd);
                    }
                    if path.contains("/log/blobs/") && call.args.contains("O_CREAT") {
                        unsynced_blobs.insert(path.clone(), false);
                        unsynced_entries.insert(path.clone(), false);
                        blobs_seen += 1;
                    }
                    fd_paths.insert(fd, path);
                }
            }
            "close" => {
                if let Some(fd) = first_number(&call.args) {
                    data_fds.remove(&fd);
                    fd_paths.remove(&fd);
                }
            }
            "fdatasync" | "fsync" if call.result.starts_with('0') => {
                let fd = first_number(&call.args).unwrap_or(-1);
                if let Some(path) = fd_paths.get(&fd)
                    && (*path == log_dir || *path == data_dir_s)
                {
                    dirs_synced.insert(path.clone());
                }
                if let Some(path) = fd_paths.get(&fd) {
                    unsynced_blobs.remove(path);
                    if path.ends_with("/log/blobs") {
                        unsynced_entries.clear();
                    }
                }
                if call.name == "fdatasync" && data_fds.contains(&fd) {
                    synced += 1;
                    unsynced_blobs
                        .values_mut()
                        .for_each(|covered| *covered = true);
                    unsynced_entries
                        .values_mut()
                        .for_each(|covered| *covered = true);
                }
            }
            "write" if call.args.starts_with("1, \"ACK ") => {
                acks += 1;
                assert!(
                    dirs_synced.contains(&log_dir) && dirs_synced.contains(&data_dir_s),
                    "acknowledgement {acks} was written before the directories of sled's new \
                     files were fsynced (synced: {dirs_synced:?})"
                );
                assert!(
                    synced > 0,
                    "acknowledgement {acks} was written without an fdatasync of sled's data \
                     file since the previous one"
                );
                synced = 0;
                let late: Vec<_> = unsynced_blobs.iter().filter(|(_, c)| **c).collect();
                assert!(
                    late.is_empty(),
                    "acknowledgement {acks} was written before blob files {late:?} were fsynced"
                );
                let late: Vec<_> = unsynced_entries.iter().filter(|(_, c)| **c).collect();
                assert!(
                    late.is_empty(),
                    "acknowledgement {acks} was written before the blobs directory was fsynced \
                     after creating {late:?}"
                );
            }
            _ => {}
        }
    }
    assert_eq!(acks, all, "the trace shows every acknowledgement");
    assert!(
        blobs_seen >= BIG_APPENDS,
        "sled wrote {blobs_seen} blob files for {BIG_APPENDS} records of 1 MiB: the test no \
         longer exercises blobs"
    );
}

#[test]
fn the_trace_reader_puts_interrupted_calls_back_together() {
    let trace = "\
7 openat(AT_FDCWD, \"/d/log/db\", O_RDWR|O_CLOEXEC) = 5
8 fdatasync(5 <unfinished ...>
7 write(1, \"ACK 1\\n\", 6)            = 6
8 <... fdatasync resumed>)          = 0
7 openat(AT_FDCWD, \"/nope\", O_RDONLY) = -1 ENOENT (No such file or directory)
8 +++ exited with 0 +++
";
    let calls: Vec<(String, String, String)> = finished_calls(trace)
        .into_iter()
        .map(|c| (c.name, c.args, c.result))
        .collect();
    let call = |n: &str, a: &str, r: &str| (n.to_owned(), a.to_owned(), r.to_owned());
    assert_eq!(
        calls,
        vec![
            call("openat", "AT_FDCWD, \"/d/log/db\", O_RDWR|O_CLOEXEC", "5"),
            call("write", "1, \"ACK 1\\n\", 6", "6"),
            call("fdatasync", "5", "0"),
            call(
                "openat",
                "AT_FDCWD, \"/nope\", O_RDONLY",
                "-1 ENOENT (No such file or directory)"
            ),
        ]
    );
}
