//! What the runner ran on, for its table and JSON: the CPU's name, family and model (the
//! name alone, "AMD EPYC" under some hypervisors, does not tell a Zen 3 from a Zen 4) and
//! the second-level cache per core, which decides how much of a product's blocks stay
//! close to the core (512 KiB on Zen 3, 1 MiB on Zen 4).

use std::path::Path;

/// The CPU, as Linux describes it (empty or `None` where it does not).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Machine {
    /// `model name` (for example `AMD EPYC`).
    pub model_name: String,
    /// `cpu family` (25 for AMD's Zen 3 and Zen 4).
    pub family: Option<u32>,
    /// `model` within the family (1: Zen 3 "Milan", 17: Zen 4 "Genoa").
    pub model: Option<u32>,
    /// The level-2 cache of a core, in KiB.
    pub l2_kib: Option<u64>,
}

impl Machine {
    /// This machine, from `/proc/cpuinfo` and `/sys/devices/system/cpu/cpu0/cache`.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            l2_kib: l2_kib(Path::new("/sys/devices/system/cpu/cpu0/cache")),
            ..from_cpuinfo(&cpuinfo)
        }
    }

    /// One line for the table, e.g. `AMD EPYC, family 25 model 1, L2 512 KiB per core`.
    pub fn describe(&self) -> String {
        let mut s = if self.model_name.is_empty() {
            "unknown CPU".to_string()
        } else {
            self.model_name.clone()
        };
        if let (Some(f), Some(m)) = (self.family, self.model) {
            s += &format!(", family {f} model {m}");
        }
        if let Some(kib) = self.l2_kib {
            s += &format!(", L2 {kib} KiB per core");
        }
        s
    }
}

/// The first processor's name, family and model in `/proc/cpuinfo`'s text.
fn from_cpuinfo(text: &str) -> Machine {
    let field = |key: &str| {
        text.lines()
            .take_while(|l| !l.trim().is_empty())
            .find(|l| l.split(':').next().map(str::trim) == Some(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    Machine {
        model_name: field("model name").unwrap_or_default(),
        family: field("cpu family").and_then(|v| v.parse().ok()),
        model: field("model").and_then(|v| v.parse().ok()),
        l2_kib: None,
    }
}

/// The size of the level-2 cache among `dir`'s `index*` entries (`level`, `size` as `512K`).
fn l2_kib(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let read = |f: &str| std::fs::read_to_string(e.path().join(f)).ok();
        if read("level")?.trim() != "2" {
            return None;
        }
        parse_size_kib(&read("size")?)
    })
}

/// `512K` -> 512, `2M` -> 2048, `1024` (bytes) -> 1.
fn parse_size_kib(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    match unit {
        "K" => Some(n),
        "M" => Some(n * 1024),
        "" => Some(n / 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_processors_name_family_and_model() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 26\nmodel\t\t: 2\n";
        let m = from_cpuinfo(text);
        assert_eq!(
            (m.model_name.as_str(), m.family, m.model),
            ("AMD EPYC", Some(25), Some(1))
        );
        let l2 = Machine {
            l2_kib: Some(512),
            ..m
        };
        assert_eq!(
            l2.describe(),
            "AMD EPYC, family 25 model 1, L2 512 KiB per core"
        );
        assert_eq!(Machine::default().describe(), "unknown CPU");
    }

    #[test]
    fn cache_sizes_in_kib() {
        assert_eq!(parse_size_kib("512K\n"), Some(512));
        assert_eq!(parse_size_kib("2M"), Some(2048));
        assert_eq!(parse_size_kib("1048576"), Some(1024));
        assert_eq!(parse_size_kib("big"), None);
    }

    #[test]
    fn finds_the_level_2_entry_of_a_cache_folder() {
        let dir = std::env::temp_dir().join(format!("bench-cache-{}", std::process::id()));
        for (i, level, size) in [(0, "1", "32K"), (2, "2", "512K"), (3, "3", "32768K")] {
            let e = dir.join(format!("index{i}"));
            std::fs::create_dir_all(&e).unwrap();
            std::fs::write(e.join("level"), format!("{level}\n")).unwrap();
            std::fs::write(e.join("size"), format!("{size}\n")).unwrap();
        }
        let got = l2_kib(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got, Some(512));
    }
}
