//! How busy the machine was while the bench measured: the numbers are only as good as the
//! quiet they were taken in, so the results file says it. Load averages at the start and the
//! end, the runnable tasks seen at the start of every round (when the bench itself is idle, so
//! they are other people's), and the CPU time the hypervisor stole.

/// Aggregate CPU jiffies from `/proc/stat`: (all, steal).
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user)
    Some((v.iter().take(8).sum(), *v.get(7)?))
}

/// `/proc/loadavg`: the 1-minute average and the number of runnable tasks.
fn loadavg() -> Option<(f64, u32)> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut w = text.split_whitespace();
    let load1 = w.next()?.parse().ok()?;
    let running = w.nth(2)?.split('/').next()?.parse().ok()?;
    Some((load1, running))
}

/// What the machine did besides the bench.
#[derive(Default, Clone)]
pub struct Noise {
    pub load1_start: f64,
    pub load1_end: f64,
    /// Runnable tasks other than the sampling process, once per round.
    pub others_running: Vec<u32>,
    /// Steal time over the whole run, percent of all CPU time.
    pub steal_percent: Option<f64>,
    start: Option<(u64, u64)>,
}

impl Noise {
    pub fn start() -> Noise {
        Noise {
            load1_start: loadavg().map(|l| l.0).unwrap_or(0.0),
            start: cpu_jiffies(),
            ..Noise::default()
        }
    }

    /// One snapshot while the bench is idle (between configurations).
    pub fn sample(&mut self) {
        if let Some((_, running)) = loadavg() {
            self.others_running.push(running.saturating_sub(1));
        }
    }

    pub fn finish(mut self) -> Noise {
        self.load1_end = loadavg().map(|l| l.0).unwrap_or(0.0);
        if let (Some((a0, s0)), Some((a1, s1))) = (self.start, cpu_jiffies()) {
            if a1 > a0 {
                self.steal_percent = Some((s1 - s0) as f64 / (a1 - a0) as f64 * 100.0);
            }
        }
        self
    }

    /// One line for the results file.
    pub fn describe(&self) -> String {
        let mut s = self.others_running.clone();
        s.sort_unstable();
        let runnable = if s.is_empty() {
            "no samples".to_string()
        } else {
            format!(
                "median {} [{}–{}] over {} samples",
                s[s.len() / 2],
                s[0],
                s[s.len() - 1],
                s.len()
            )
        };
        format!(
            "1-minute load {:.2} at the start, {:.2} at the end (the bench's own load included); \
             other runnable tasks at the start of each round: {runnable}; steal time {}",
            self.load1_start,
            self.load1_end,
            self.steal_percent
                .map(|p| format!("{p:.1}%"))
                .unwrap_or_else(|| "unknown".into())
        )
    }
}
