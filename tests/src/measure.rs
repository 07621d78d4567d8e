//! What the benchmarks (`make bench`) share: reading a figure so that one that cannot be measured stops the run
//! with a sentence naming it, instead of printing 0 or NaN, which would read as "under the goal".
//!
//! The parsers are pure functions over what the guest or a tool printed, tested below on real and broken
//! output; the benchmarks call them and stop at the first error.

use std::collections::BTreeMap;

/// Stops the benchmark: `figure` cannot be measured, and `why` says what was missing.
/// A panic (not `exit`) so QEMU and host daemons are dropped and the console log is printed.
pub fn unmeasured(figure: &str, why: impl std::fmt::Display) -> ! {
    panic!("benchmark figure \"{figure}\" could not be measured: {why}")
}

/// Clock ticks per second of utime/stime in /proc/<pid>/stat (USER_HZ: 100 on every Linux ARM build).
pub const USER_HZ: f64 = 100.0;

/// The guest command whose output [`parse_cpu_sample`] reads: uptime, then each Cairn process's stat line
/// (PID 1, init, and every `cairn` process), each prefixed so kernel messages on the console are told apart.
pub const CPU_SAMPLE_COMMAND: &str = "echo \"uptime $(cat /proc/uptime)\"; for p in $(echo 1 $(pidof cairn) | tr ' ' '\\n' | sort -un); do s=$(cat /proc/$p/stat 2>/dev/null) && echo \"stat $s\"; done";

/// One process as /proc/<pid>/stat describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    /// Field 22: when the process started, in ticks since boot; with the pid it names one process.
    pub start_ticks: u64,
    /// Fields 14 + 15: utime + stime, in ticks.
    pub cpu_ticks: u64,
}

/// Parses one /proc/<pid>/stat line; anything short or not numeric where a number belongs is an error.
pub fn parse_proc_stat(line: &str) -> Result<ProcStat, String> {
    let line = line.trim();
    let (head, tail) = line
        .rsplit_once(')')
        .ok_or_else(|| format!("no \"(comm)\" in the stat line {line:?}"))?;
    let (pid, comm) = head
        .split_once(" (")
        .ok_or_else(|| format!("no \"pid (comm\" in the stat line {line:?}"))?;
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| format!("pid {pid:?} is not a number in {line:?}"))?;
    // Fields after the comm start at field 3 (state); the kernel prints 52 fields in all.
    let rest: Vec<&str> = tail.split_whitespace().collect();
    if rest.len() < 50 {
        return Err(format!(
            "the stat line of pid {pid} has {} fields after the comm, expected at least 50: {line:?}",
            rest.len() + 2
        ));
    }
    let field = |n: usize| -> Result<u64, String> {
        rest[n - 3]
            .parse()
            .map_err(|_| format!("field {n} of pid {pid}'s stat line is not a number: {line:?}"))
    };
    Ok(ProcStat {
        pid,
        comm: comm.to_string(),
        start_ticks: field(22)?,
        cpu_ticks: field(14)? + field(15)?,
    })
}

/// The Cairn processes at one moment, and the guest's uptime at that moment.
#[derive(Debug, Clone)]
pub struct CpuSample {
    pub uptime_s: f64,
    pub procs: BTreeMap<u32, ProcStat>,
}

/// Reads the output of [`CPU_SAMPLE_COMMAND`]. Lines without its prefixes (kernel messages) are skipped; a
/// prefixed line that does not parse, a missing uptime or a missing PID 1 is an error.
pub fn parse_cpu_sample(out: &str) -> Result<CpuSample, String> {
    let mut uptime = None;
    let mut procs = BTreeMap::new();
    for line in out.lines() {
        let line = line.trim();
        if let Some(u) = line.strip_prefix("uptime ") {
            let first = u.split_whitespace().next().unwrap_or("");
            let v: f64 = first
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("the guest's /proc/uptime read {u:?}"))?;
            if uptime.replace(v).is_some() {
                return Err(format!("two uptime lines in {out:?}"));
            }
        } else if let Some(s) = line.strip_prefix("stat ") {
            let p = parse_proc_stat(s)?;
            if let Some(old) = procs.insert(p.pid, p.clone()) {
                if old != p {
                    return Err(format!("pid {} listed twice, differently", p.pid));
                }
            }
        } else if line == "stat" {
            return Err(format!("an empty stat line in {out:?}"));
        }
    }
    let uptime_s = uptime.ok_or_else(|| format!("no uptime line in {out:?}"))?;
    if !procs.contains_key(&1) {
        return Err(format!("no stat line for PID 1 (init) in {out:?}"));
    }
    Ok(CpuSample { uptime_s, procs })
}

/// CPU used between two samples, summed over the processes that exist at both ends (same pid, same start).
#[derive(Debug, Clone, PartialEq)]
pub struct CpuUse {
    pub ticks: u64,
    pub seconds: f64,
    /// The processes counted: (pid, comm).
    pub counted: Vec<(u32, String)>,
    /// Processes present at only one end (started, ended, or a pid reused), left out of `ticks`.
    pub left_out: Vec<(u32, String)>,
}

impl CpuUse {
    /// Percent of one core.
    pub fn percent(&self) -> f64 {
        self.ticks as f64 / (USER_HZ * self.seconds) * 100.0
    }

    /// Whether a Cairn process other than init (the daemon) is among those counted.
    pub fn counts_daemon(&self) -> bool {
        self.counted
            .iter()
            .any(|(pid, comm)| *pid != 1 && comm == "cairn")
    }
}

/// Compares two samples process by process (never by tick value).
pub fn cpu_between(a: &CpuSample, b: &CpuSample) -> Result<CpuUse, String> {
    let seconds = b.uptime_s - a.uptime_s;
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(format!(
            "the guest's uptime went from {} to {} s",
            a.uptime_s, b.uptime_s
        ));
    }
    let (mut ticks, mut counted, mut left_out) = (0u64, vec![], vec![]);
    for (pid, pa) in &a.procs {
        match b.procs.get(pid) {
            Some(pb) if pb.start_ticks == pa.start_ticks => {
                let d = pb.cpu_ticks.checked_sub(pa.cpu_ticks).ok_or_else(|| {
                    format!(
                        "pid {pid}'s CPU time went back from {} to {} ticks",
                        pa.cpu_ticks, pb.cpu_ticks
                    )
                })?;
                ticks += d;
                counted.push((*pid, pa.comm.clone()));
            }
            _ => left_out.push((*pid, pa.comm.clone())),
        }
    }
    for (pid, pb) in &b.procs {
        if a.procs.get(pid).map(|pa| pa.start_ticks) != Some(pb.start_ticks) {
            left_out.push((*pid, pb.comm.clone()));
        }
    }
    if counted.is_empty() {
        return Err("no process was there at both ends of the window".into());
    }
    Ok(CpuUse {
        ticks,
        seconds,
        counted,
        left_out,
    })
}

/// Samples the Cairn processes in the guest on the serial console; `figure` names what needs it if it fails.
pub fn cpu_sample(m: &mut cairn_qemu::Machine, figure: &str) -> CpuSample {
    let out = m
        .serial(CPU_SAMPLE_COMMAND, std::time::Duration::from_secs(30))
        .unwrap_or_else(|e| unmeasured(figure, format!("reading /proc in the guest: {e}")));
    parse_cpu_sample(&out).unwrap_or_else(|e| unmeasured(figure, e))
}

/// Waits until the Cairn processes are idle: the daemon there throughout, and together at most 1 % of a
/// core over 2 s (told by their own CPU use, never by a fixed sleep).
pub fn wait_idle(m: &mut cairn_qemu::Machine, figure: &str, deadline: std::time::Duration) {
    let until = std::time::Instant::now() + deadline;
    let mut last = cpu_sample(m, figure);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let now = cpu_sample(m, figure);
        let used = cpu_between(&last, &now).unwrap_or_else(|e| unmeasured(figure, e));
        if used.counts_daemon() && used.left_out.is_empty() && used.percent() <= 1.0 {
            return;
        }
        if std::time::Instant::now() >= until {
            unmeasured(
                figure,
                format!(
                    "the Cairn processes were not idle within {} s (last {:.1} % of a core over {:.1} s; counted {:?}, left out {:?})",
                    deadline.as_secs(),
                    used.percent(),
                    used.seconds,
                    used.counted,
                    used.left_out
                ),
            );
        }
        last = now;
    }
}

/// The guest command whose output [`parse_memory`] reads: Rss and Pss of PID 1 and every `cairn` process.
pub const MEMORY_COMMAND: &str = "for p in $(echo 1 $(pidof cairn) | tr ' ' '\\n' | sort -un); do echo \"mem $p $(cat /proc/$p/comm) $(grep -E '^(Rss|Pss):' /proc/$p/smaps_rollup | tr -s ' ' | tr '\\n' ' ')\"; done";

/// Resident memory of the Cairn processes, in kB, with one printable line per process.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub rss_kb: u64,
    pub pss_kb: u64,
    /// "pid comm Rss: N kB Pss: N kB" per process.
    pub lines: Vec<String>,
}

/// Reads the output of [`MEMORY_COMMAND`]: every process needs both figures; init and the daemon must be there.
pub fn parse_memory(out: &str) -> Result<Memory, String> {
    let (mut rss_kb, mut pss_kb, mut lines) = (0, 0, vec![]);
    let mut daemon = false;
    let mut pids = std::collections::BTreeSet::new();
    for line in out.lines() {
        let Some(l) = line.trim().strip_prefix("mem ") else {
            continue;
        };
        let words: Vec<&str> = l.split_whitespace().collect();
        let figure = |name: &str| -> Result<u64, String> {
            let i = words
                .iter()
                .position(|w| *w == name)
                .ok_or_else(|| format!("no {name} in {l:?}"))?;
            words
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} is not a number in {l:?}"))
        };
        let pid: u32 = words
            .first()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("no pid in {l:?}"))?;
        let (rss, pss) = (figure("Rss:")?, figure("Pss:")?);
        if rss == 0 || pss == 0 {
            return Err(format!("zero resident memory in {l:?}"));
        }
        if !pids.insert(pid) {
            return Err(format!("pid {pid} listed twice"));
        }
        daemon |= pid != 1 && words.get(1) == Some(&"cairn");
        rss_kb += rss;
        pss_kb += pss;
        lines.push(l.to_string());
    }
    if !pids.contains(&1) {
        return Err(format!("no figures for PID 1 (init) in {out:?}"));
    }
    if !daemon {
        return Err(format!("no figures for the daemon in {out:?}"));
    }
    Ok(Memory {
        rss_kb,
        pss_kb,
        lines,
    })
}

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkFigures {
    pub requests: u64,
    pub requests_per_s: f64,
    pub p99_ms: f64,
}

/// Reads `wrk --latency` output. No requests, a missing figure, any non-2xx answer or any socket error
/// (a timed-out request is left out of the latency figures) is an error.
pub fn parse_wrk(text: &str) -> Result<WrkFigures, String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    if let Some(l) = lines.iter().find(|l| l.starts_with("Non-2xx")) {
        return Err(format!("wrk saw error answers ({l})"));
    }
    if let Some(l) = lines.iter().find(|l| l.starts_with("Socket errors")) {
        return Err(format!("wrk saw socket errors ({l})"));
    }
    let requests: u64 = lines
        .iter()
        .find_map(|l| l.split_once(" requests in ").map(|(n, _)| n))
        .and_then(|n| n.trim().parse().ok())
        .ok_or("no \"N requests in\" line")?;
    let requests_per_s: f64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no Requests/sec line")?;
    let p99 = lines
        .iter()
        .find(|l| l.starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or("no 99% line (run wrk with --latency)")?;
    let p99_ms = parse_duration_ms(p99)?;
    if requests == 0 || !(requests_per_s.is_finite() && requests_per_s > 0.0) {
        return Err(format!("wrk completed {requests} requests"));
    }
    Ok(WrkFigures {
        requests,
        requests_per_s,
        p99_ms,
    })
}

/// "812.00us", "1.25ms", "2.00s" in milliseconds.
pub fn parse_duration_ms(v: &str) -> Result<f64, String> {
    let split = v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{v:?} is not a duration"))?;
    let ms = match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return Err(format!("{v:?} has an unknown unit")),
    };
    if ms.is_finite() && ms >= 0.0 {
        Ok(ms)
    } else {
        Err(format!("{v:?} is not a duration"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Taken from the aarch64 guest (6.12 kernel): init and the daemon.
    const INIT: &str = "1 (cairn) S 0 1 1 0 -1 4194560 1036 5493 0 3 12 31 40 52 20 0 1 0 16 11239424 412 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
    const DAEMON: &str = "142 (cairn) S 1 142 142 0 -1 4194560 3101 0 0 0 250 77 0 0 20 0 5 0 412 40189952 2217 18446744073709551615 1 1 0 0 0 0 0 4096 1088 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";

    fn sample(uptime: f64, stats: &[&str]) -> String {
        let mut s = format!("uptime {uptime} 30.00\n");
        for st in stats {
            s.push_str(&format!("stat {st}\n"));
        }
        s
    }

    #[test]
    fn a_stat_line_gives_utime_plus_stime_and_the_start_time() {
        let p = parse_proc_stat(DAEMON).unwrap();
        assert_eq!((p.pid, p.comm.as_str()), (142, "cairn"));
        assert_eq!(p.cpu_ticks, 250 + 77);
        assert_eq!(p.start_ticks, 412);
        // A comm with spaces and parentheses does not shift the fields.
        let odd = INIT.replace("(cairn)", "(a) b (c)");
        assert_eq!(parse_proc_stat(&odd).unwrap().cpu_ticks, 12 + 31);
    }

    #[test]
    fn an_empty_or_cut_stat_line_is_an_error_not_zero() {
        assert!(parse_proc_stat("").is_err());
        assert!(parse_proc_stat("142 (cairn) S 1 142").is_err());
        assert!(parse_proc_stat(&DAEMON.replace(" 250 ", " x ")).is_err());
        assert!(parse_cpu_sample("uptime 10.00 3.00\nstat \n").is_err());
        assert!(parse_cpu_sample(&sample(10.0, &[&DAEMON[..40]])).is_err());
    }

    #[test]
    fn a_sample_needs_its_uptime_and_init() {
        assert!(parse_cpu_sample(&format!("stat {INIT}\n")).is_err());
        assert!(parse_cpu_sample(&sample(10.0, &[DAEMON])).is_err());
        assert!(parse_cpu_sample("uptime \nstat 1").is_err());
        assert!(parse_cpu_sample("").is_err());
        // Kernel messages between the lines are not part of the sample.
        let noisy = format!(
            "[  12.3] md/raid:md0: Disk failure on vdc\n{}",
            sample(10.0, &[INIT, DAEMON])
        );
        assert_eq!(parse_cpu_sample(&noisy).unwrap().procs.len(), 2);
    }

    #[test]
    fn processes_with_the_same_ticks_are_both_counted() {
        // Two processes whose utime and stime are equal: merging by tick value would count one.
        let twin = DAEMON.replacen("142 (cairn)", "143 (cairn)", 1);
        let a = parse_cpu_sample(&sample(10.0, &[INIT, DAEMON, &twin])).unwrap();
        let b_daemon = DAEMON.replace(" 250 77 ", " 300 77 ");
        let b_twin = twin.replace(" 250 77 ", " 300 77 ");
        let b = parse_cpu_sample(&sample(20.0, &[INIT, &b_daemon, &b_twin])).unwrap();
        let u = cpu_between(&a, &b).unwrap();
        assert_eq!(u.ticks, 100);
        assert_eq!(u.seconds, 10.0);
        assert_eq!(u.percent(), 10.0);
        assert!(u.counts_daemon());
    }

    #[test]
    fn a_process_at_one_end_only_is_left_out_and_named() {
        let a = parse_cpu_sample(&sample(10.0, &[INIT, DAEMON])).unwrap();
        // The daemon restarted under the same pid: another start time, so another process.
        let restarted = DAEMON.replace(" 412 40189952", " 900 40189952");
        let b = parse_cpu_sample(&sample(20.0, &[INIT, &restarted])).unwrap();
        let u = cpu_between(&a, &b).unwrap();
        assert_eq!(u.ticks, 0);
        assert!(!u.counts_daemon());
        assert_eq!(u.left_out.len(), 2);
    }

    #[test]
    fn time_or_ticks_going_back_is_an_error() {
        let a = parse_cpu_sample(&sample(10.0, &[INIT, DAEMON])).unwrap();
        let b = parse_cpu_sample(&sample(10.0, &[INIT, DAEMON])).unwrap();
        assert!(cpu_between(&a, &b).is_err());
        let less = DAEMON.replace(" 250 77 ", " 10 77 ");
        let c = parse_cpu_sample(&sample(20.0, &[INIT, &less])).unwrap();
        assert!(cpu_between(&a, &c).is_err());
    }

    #[test]
    fn memory_needs_both_figures_for_init_and_the_daemon() {
        let out =
            "mem 1 cairn Rss: 2100 kB Pss: 1200 kB \nmem 142 cairn Rss: 9000 kB Pss: 7000 kB \n";
        let m = parse_memory(out).unwrap();
        assert_eq!((m.rss_kb, m.pss_kb, m.lines.len()), (11100, 8200, 2));
        assert!(parse_memory("mem 1 cairn Rss: 2100 kB Pss: 1200 kB \n").is_err());
        assert!(
            parse_memory("mem 1 cairn Rss: 2100 kB \nmem 142 cairn Rss: 9 kB Pss: 7 kB").is_err()
        );
        assert!(parse_memory("mem 1 cairn \nmem 142 cairn Rss: 9 kB Pss: 7 kB").is_err());
        assert!(parse_memory("").is_err());
    }

    const WRK: &str = "Running 8s test @ http://127.0.0.1:1/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.33us  301.10us  12.54ms   90.00%
    Req/Sec    40.10k     2.31k   45.00k    70.00%
  Latency Distribution
     50%  780.00us
     75%    0.90ms
     90%    1.05ms
     99%    1.25ms
  640000 requests in 8.00s, 60.00MB read
Requests/sec:  80000.00
Transfer/sec:      7.50MB
";

    #[test]
    fn wrk_output_gives_rate_and_p99() {
        let w = parse_wrk(WRK).unwrap();
        assert_eq!(w.requests, 640000);
        assert_eq!(w.requests_per_s, 80000.0);
        assert_eq!(w.p99_ms, 1.25);
        assert_eq!(parse_duration_ms("812.00us").unwrap(), 0.812);
        assert_eq!(parse_duration_ms("2.00s").unwrap(), 2000.0);
    }

    #[test]
    fn wrk_output_without_a_figure_or_with_errors_is_an_error() {
        assert!(parse_wrk("").is_err());
        assert!(parse_wrk("unable to connect to 127.0.0.1:1 Connection refused").is_err());
        assert!(parse_wrk(&WRK.replace("     99%    1.25ms\n", "")).is_err());
        assert!(parse_wrk(&WRK.replace("1.25ms", "1.25")).is_err());
        assert!(parse_wrk(&WRK.replace("Requests/sec:  80000.00", "Requests/sec:  nan")).is_err());
        assert!(parse_wrk(&WRK.replace("640000 requests", "0 requests")).is_err());
        let errors = WRK.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 0, write 0, timeout 12\nRequests/sec",
        );
        assert!(parse_wrk(&errors).is_err());
        let non2xx = WRK.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 5\nRequests/sec",
        );
        assert!(parse_wrk(&non2xx).is_err());
    }
}
