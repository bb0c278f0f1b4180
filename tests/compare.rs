//! Issue 17, part 3: `examples/compare` prints one row per mechanism with figures that
//! make sense (no timing thresholds: the machine is shared and noisy).

mod util;

use std::process::Command;

#[test]
fn compare_prints_a_row_per_mechanism() {
    let out = Command::new(util::example_bin("compare"))
        .args(["--quick", "--webhook-retry", "0.2"])
        .output()
        .expect("run compare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "compare failed:\n{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("mechanism"))
        .unwrap_or_else(|| panic!("no table in:\n{stdout}"));
    let rows = &lines[header + 1..];
    for (i, name) in ["WebSocket", "SSE", "long poll", "webhook"]
        .iter()
        .enumerate()
    {
        let row = rows
            .get(i)
            .filter(|r| r.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{stdout}"));
        // The columns after the name: p50, p99, bytes down, bytes up, requests, connections,
        // idle bytes, missed, resume ms, then the text of how it resumes.
        let cols: Vec<&str> = row[name.len()..].split_whitespace().collect();
        let num = |j: usize| -> f64 {
            cols[j]
                .parse()
                .unwrap_or_else(|_| panic!("{name}: column {j} is {:?} in {row:?}", cols[j]))
        };
        assert!(
            num(0) > 0.0 && num(1) >= num(0),
            "{name}: latencies in {row:?}"
        );
        assert!(
            num(2) > 64.0,
            "{name}: an event of 64 bytes and its framing: {row:?}"
        );
        assert!(num(6) > 0.0, "{name}: idle memory in {row:?}");
        assert_eq!(
            cols[7], "0",
            "{name}: events missed across the drop: {row:?}"
        );
        assert!(num(8) >= 0.0, "{name}: resume time in {row:?}");
        match *name {
            "WebSocket" | "SSE" => {
                assert_eq!(num(3), 0.0, "{name}: nothing sent per event: {row:?}");
                assert_eq!(num(4), 0.0, "{name}: no request per event: {row:?}");
            }
            // At least one request per poll answer, which may carry more than one event.
            "long poll" => assert!(num(3) > 0.0 && num(4) > 0.5, "{name}: requests in {row:?}"),
            _ => assert!(
                num(3) > 0.0 && num(4) >= 1.0,
                "{name}: a POST per event: {row:?}"
            ),
        }
    }
}
