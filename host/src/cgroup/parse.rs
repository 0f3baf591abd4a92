//! The formats of cgroup files (the kernel's cgroup-v2.rst, "Interface Files"), as pure functions over their text.
//! Lines that do not fit a format are skipped, as containerd skips them.

use std::collections::BTreeMap;

use super::stats::UNLIMITED;

/// A flat-keyed file, `KEY VALUE` per line (`memory.stat`, `cpu.stat`, `cpuacct.stat`, `memory.events`,
/// `memory.oom_control`).
pub fn flat_keyed(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let key = fields.next()?;
        let value = fields.next()?.parse().ok()?;
        match fields.next() {
            None => Some((key, value)),
            Some(_) => None,
        }
    })
}

/// A flat-keyed file as a map (a key repeated: its last value).
pub fn flat_keyed_map(text: &str) -> BTreeMap<String, u64> {
    // Inserted one by one: collecting would sort first, and the sort's code is a cost to the shim's size.
    let mut map = BTreeMap::new();
    for (key, value) in flat_keyed(text) {
        map.insert(key.to_owned(), value);
    }
    map
}

/// A nested-keyed file, `KEY SUB=VALUE SUB=VALUE ...` per line (`io.stat` keyed by `MAJ:MIN`, the pressure files
/// keyed by `some` and `full`); sub-fields without `=` are skipped, values are left to the caller to parse.
pub fn nested_keyed(
    text: &str,
) -> impl Iterator<Item = (&str, impl Iterator<Item = (&str, &str)>)> {
    text.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let key = fields.next()?;
        Some((key, fields.filter_map(|field| field.split_once('='))))
    })
}

/// A single-value file; `max` reads as [`UNLIMITED`]. `None` when the content is not a number.
pub fn u64_or_max(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => Some(UNLIMITED),
        number => number.parse().ok(),
    }
}

/// `/proc/partitions`: `major minor #blocks name` after a header; maps a device number to `/dev/NAME`, the first
/// line winning (as containerd's `getDevices`).
pub fn partitions(text: &str) -> BTreeMap<(u64, u64), String> {
    let mut devices = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [major, minor, _, name] = fields[..] else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        devices
            .entry((major, minor))
            .or_insert_with(|| format!("/dev/{name}"));
    }
    devices
}

/// The page sizes for which a directory listing has `hugetlb.SIZE.SUFFIX` files (`usage_in_bytes` on v1,
/// `current` on v2), sorted. `hugetlb.2MB.rsvd.*` files are not sizes.
pub fn hugetlb_page_sizes<'a>(
    file_names: impl IntoIterator<Item = &'a str>,
    suffix: &str,
) -> Vec<String> {
    let mut sizes: Vec<String> = file_names
        .into_iter()
        .filter_map(|name| {
            let size = name
                .strip_prefix("hugetlb.")?
                .strip_suffix(suffix)?
                .strip_suffix('.')?;
            (!size.is_empty() && !size.contains('.')).then(|| size.to_owned())
        })
        .collect();
    sizes.sort();
    sizes.dedup();
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_lines() {
        let pairs: Vec<_> =
            flat_keyed("cache 4096\nrss 8192\ngarbage line here\nnot_a_number x\n\ntotal_rss 1\n")
                .collect();
        assert_eq!(pairs, [("cache", 4096), ("rss", 8192), ("total_rss", 1)]);
    }

    #[test]
    fn nested_keyed_lines() {
        let lines: Vec<(&str, Vec<(&str, &str)>)> = nested_keyed(
            "8:16 rbytes=1459200 wbytes=314773504 junk\nsome avg10=1.50 total=12345\n\nlonely\n",
        )
        .map(|(key, fields)| (key, fields.collect()))
        .collect();
        assert_eq!(
            lines,
            [
                ("8:16", vec![("rbytes", "1459200"), ("wbytes", "314773504")]),
                ("some", vec![("avg10", "1.50"), ("total", "12345")]),
                ("lonely", vec![]),
            ]
        );
    }

    #[test]
    fn single_values() {
        assert_eq!(u64_or_max("42\n"), Some(42));
        assert_eq!(u64_or_max("max\n"), Some(UNLIMITED));
        assert_eq!(u64_or_max("-1\n"), None);
        assert_eq!(u64_or_max(""), None);
    }

    #[test]
    fn partitions_name_devices() {
        let devices = partitions(
            "major minor  #blocks  name\n\n 253        0   52428800 vda\n\
             253        1   52427759 vda1\n 253 0 1 dup\n",
        );
        assert_eq!(devices.len(), 2);
        assert_eq!(devices.get(&(253, 0)).map(String::as_str), Some("/dev/vda"));
        assert_eq!(
            devices.get(&(253, 1)).map(String::as_str),
            Some("/dev/vda1")
        );
    }

    #[test]
    fn hugetlb_sizes() {
        let names = [
            "hugetlb.2MB.usage_in_bytes",
            "hugetlb.2MB.rsvd.usage_in_bytes",
            "hugetlb.1GB.usage_in_bytes",
            "hugetlb.1GB.limit_in_bytes",
            "memory.usage_in_bytes",
        ];
        assert_eq!(hugetlb_page_sizes(names, "usage_in_bytes"), ["1GB", "2MB"]);
        assert_eq!(
            hugetlb_page_sizes(["hugetlb.2MB.current", "hugetlb.2MB.max"], "current"),
            ["2MB"]
        );
    }
}
