//! The management app's dashboard in a real browser: Debian's headless Chromium
//! (`/usr/bin/chromium`, which `.ci/run` installs when missing) driven over the DevTools
//! protocol. The page loads, shows one row per worker, a screenshot is written under
//! `target/`, and a killed worker's row changes, and its death appears in the event
//! timeline with its signal, within seconds without a reload; under a mount point the
//! worker table and charts render too.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;
use wix_cluster_suite::{PATIENCE, Program, http_get, send_signal, wait_until};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium with a fresh profile, quiet on this machine's closed network.
fn chromium(profile: &Path) -> Browser {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does it)"
    );
    let _ = std::fs::remove_dir_all(profile);
    std::fs::create_dir_all(profile).expect("create the browser profile folder");
    let args: Vec<&OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(CHROMIUM)))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1400, 1000)))
        .user_data_dir(Some(profile.to_path_buf()))
        .args(args)
        .idle_browser_timeout(Duration::from_secs(300))
        .build()
        .expect("browser options");
    Browser::new(options).expect("start headless chromium")
}

/// A tab showing the dashboard of the management app at `management`.
fn open_dashboard(browser: &Browser, management: std::net::SocketAddr) -> std::sync::Arc<Tab> {
    open_dashboard_at(browser, management, "/dashboard")
}

/// A tab showing the page at `path` of the management app at `management`.
fn open_dashboard_at(
    browser: &Browser,
    management: std::net::SocketAddr,
    path: &str,
) -> std::sync::Arc<Tab> {
    let tab = browser.new_tab().expect("a tab");
    tab.set_default_timeout(PATIENCE);
    tab.navigate_to(&format!("http://{management}{path}"))
        .and_then(|tab| tab.wait_until_navigated())
        .expect("load the dashboard");
    tab
}

/// Evaluates `expression` (which must produce a JSON string) in the page.
fn eval_json(tab: &Tab, expression: &str) -> Value {
    let result = tab
        .evaluate(&format!("JSON.stringify({expression})"), false)
        .unwrap_or_else(|e| panic!("evaluate {expression}: {e}"));
    let text = result
        .value
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or("null")
        .to_owned();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The worker table's rows as the page shows them: `[{pid, state}]`.
fn rows(tab: &Tab) -> Vec<(u32, String)> {
    let rows = eval_json(
        tab,
        "[...document.querySelectorAll('#workers tbody tr')]\
         .map(r => ({ pid: Number(r.dataset.pid), state: r.dataset.state }))",
    );
    rows.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|row| {
            (
                row["pid"].as_u64().unwrap_or(0) as u32,
                row["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn live_pids(rows: &[(u32, String)]) -> BTreeSet<u32> {
    rows.iter()
        .filter(|(_, state)| state != "exited")
        .map(|(pid, _)| *pid)
        .collect()
}

fn screenshot(tab: &Tab, name: &str) -> PathBuf {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "a blank page? {} bytes", png.len());
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, &png).expect("write the screenshot");
    eprintln!("screenshot: {}", path.display());
    path
}

#[test]
fn dashboard_in_chromium_shows_every_worker_and_follows_a_kill_without_reload() {
    let program = Program::start(
        "management_page",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "3"),
            ("WIX_CLUSTER_ADMIN_TOKEN", "dashboard-token"),
        ],
    );
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");

    let browser =
        chromium(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-chromium-profile"));
    let tab = open_dashboard(&browser, management);

    // One row per worker, the master's children.
    let children: BTreeSet<u32> = program.workers().into_iter().collect();
    let mut shown = Vec::new();
    let all_shown = wait_until(PATIENCE, || {
        shown = rows(&tab);
        live_pids(&shown) == children && shown.len() == 3
    });
    assert!(all_shown, "rows {shown:?}, workers {children:?}");
    assert!(shown.iter().all(|(_, state)| state == "ready"), "{shown:?}");
    let title = eval_json(&tab, "document.getElementById('app-name').textContent");
    assert_eq!(title, "management_page 0.0.0");
    let admin_shown = eval_json(&tab, "!document.getElementById('admin').hidden");
    assert_eq!(
        admin_shown, true,
        "the actions show when a token is configured"
    );

    // Let the charts get a few samples, then keep a picture of the page.
    let charted = wait_until(PATIENCE, || {
        eval_json(
            &tab,
            "document.querySelectorAll('#cpu-chart polyline, #rss-chart polyline').length",
        )
        .as_u64()
            >= Some(6)
    });
    assert!(charted, "no chart lines drawn");
    screenshot(&tab, "management-dashboard.png");

    // The timeline was filled from `/events`: every worker's start is there.
    let mut forks = Value::Null;
    let filled = wait_until(PATIENCE, || {
        forks = eval_json(
            &tab,
            "[...document.querySelectorAll('#timeline li[data-kind=fork]')]\
             .map(li => Number(li.dataset.pid))",
        );
        let forked: BTreeSet<u32> = forks
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pid| pid.as_u64().map(|pid| pid as u32))
            .collect();
        children.is_subset(&forked)
    });
    assert!(filled, "the timeline lacks the workers' forks: {forks}");

    // Mark the page: a reload would lose the mark.
    eval_json(&tab, "(window.__notReloaded = 'still here')");
    let victim = *children.iter().next().expect("a worker");
    send_signal(victim, nix::sys::signal::Signal::SIGKILL);
    let mut after = Vec::new();
    let followed = wait_until(Duration::from_secs(8), || {
        after = rows(&tab);
        let victim_row = after.iter().find(|(pid, _)| *pid == victim);
        let replaced = live_pids(&after).len() == 3 && !live_pids(&after).contains(&victim);
        victim_row.is_none_or(|(_, state)| state == "exited") && replaced
    });
    assert!(
        followed,
        "the killed worker's row did not change within 8 s: {after:?}"
    );
    // The death is in the timeline, live (from the event stream), with its signal.
    let mut exit = Value::Null;
    let in_timeline = wait_until(Duration::from_secs(8), || {
        exit = eval_json(
            &tab,
            &format!(
                "[...document.querySelectorAll('#timeline li[data-kind=exit][data-pid=\"{victim}\"]')]\
                 .map(li => li.textContent)"
            ),
        );
        exit.as_array().is_some_and(|texts| {
            texts
                .iter()
                .any(|t| t.as_str().is_some_and(|t| t.contains("SIGKILL")))
        })
    });
    assert!(
        in_timeline,
        "the kill of {victim} is not in the timeline with SIGKILL within 8 s: {exit}; \
         timeline: {}",
        eval_json(&tab, "document.getElementById('timeline').textContent")
    );
    assert_eq!(
        eval_json(&tab, "window.__notReloaded"),
        "still here",
        "the page was reloaded"
    );
    screenshot(&tab, "management-dashboard-after-kill.png");
}

#[test]
fn dashboard_in_chromium_charts_a_request_burst_and_lists_the_metrics() {
    let program = Program::start(
        "metrics",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_MANAGEMENT_ADDR", "127.0.0.1:0"),
        ],
    );
    let management = program.management_addr();
    let app = program.listening_addr();
    program.wait_for_200(management, "/health/ready");

    let browser =
        chromium(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-traffic-profile"));
    let tab = open_dashboard(&browser, management);
    let plotted = || {
        eval_json(
            &tab,
            "Number(document.getElementById('rps-chart').dataset.max ?? -1)",
        )
        .as_f64()
        .unwrap_or(-1.0)
    };
    // Drawn, and flat: nothing but the readiness probes so far.
    assert!(
        wait_until(PATIENCE, || plotted() >= 0.0),
        "the chart is not drawn"
    );
    // The app has served nothing yet: the chart reads below what the burst must reach,
    // or reaching it later would prove nothing.
    let before = plotted();
    assert!(
        before < 10.0,
        "the request chart reads {before} before any request"
    );

    // A burst of requests moves the request chart and shows a latency.
    let burst = std::thread::spawn(move || {
        for _ in 0..300 {
            let _ = http_get(app, "/job?kind=burst");
        }
    });
    let moved = wait_until(PATIENCE, || plotted() >= 10.0);
    burst.join().expect("burst thread");
    assert!(moved, "the request chart did not move: max {}", plotted());
    let latency = wait_until(PATIENCE, || {
        eval_json(&tab, "document.getElementById('latency-now').textContent")
            .as_str()
            .is_some_and(|text| text.contains("p99"))
    });
    assert!(latency, "no latency shown");
    // The app's and its library's metrics are in the table.
    let listed = wait_until(PATIENCE, || {
        let names = eval_json(
            &tab,
            "[...document.querySelectorAll('#metrics tbody tr td:first-child')]\
             .map(td => td.textContent)",
        );
        let names: Vec<&str> = names
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        names.contains(&"support_jobs_processed_total") && names.contains(&"app_worker_generation")
    });
    assert!(listed, "the metrics table lacks the app's metrics");
    screenshot(&tab, "management-dashboard-traffic.png");
}

#[test]
fn dashboard_in_chromium_under_a_mount_point_shows_the_workers_and_charts() {
    let program = Program::start(
        "management_page",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_WORKERS", "2"),
            ("WIX_CLUSTER_MOUNT_POINT", "/admin"),
            ("WIX_CLUSTER_ADMIN_TOKEN", "dashboard-token"),
        ],
    );
    let management = program.management_addr();
    program.wait_for_200(management, "/admin/health/ready");
    let browser =
        chromium(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-mounted-profile"));
    let children: BTreeSet<u32> = program.workers().into_iter().collect();
    let path = "/admin/dashboard";
    let tab = open_dashboard_at(&browser, management, path);
    {
        let mut shown = Vec::new();
        let all_shown = wait_until(PATIENCE, || {
            shown = rows(&tab);
            live_pids(&shown) == children
        });
        assert!(
            all_shown,
            "{path}: rows {shown:?}, workers {children:?}; error: {}",
            eval_json(&tab, "document.getElementById('error').textContent")
        );
        let charted = wait_until(PATIENCE, || {
            eval_json(
                &tab,
                "document.querySelectorAll('#cpu-chart polyline, #rss-chart polyline').length",
            )
            .as_u64()
                >= Some(4)
        });
        assert!(charted, "{path}: no chart lines drawn");
        assert_eq!(
            eval_json(&tab, "!document.getElementById('admin').hidden"),
            true,
            "{path}: the actions show when a token is configured"
        );
        assert_eq!(
            eval_json(&tab, "document.getElementById('error').style.display"),
            "none",
            "{path}: the page reports an error"
        );
        assert_eq!(
            eval_json(&tab, "document.getElementById('events-state').textContent"),
            "live",
            "{path}: the event stream is not live"
        );
    }
    screenshot(&tab, "management-dashboard-mounted.png");
}

#[test]
fn dashboard_in_chromium_shows_nan_and_infinite_gauges_and_keeps_refreshing() {
    let program = Program::start(
        "metrics",
        &[
            ("PORT", "0"),
            ("WIX_CLUSTER_MANAGEMENT_ADDR", "127.0.0.1:0"),
            ("WIX_CLUSTER_ADMIN_TOKEN", "dashboard-token"),
        ],
    );
    let management = program.management_addr();
    let app = program.listening_addr();
    program.wait_for_200(management, "/health/ready");
    let cases = [
        ("app_probe_nan", "NaN", "NaN"),
        ("app_probe_inf", "inf", "+Inf"),
        ("app_probe_minus_inf", "-inf", "-Inf"),
    ];
    for (name, value, _) in cases {
        let set = http_get(app, &format!("/gauge/{name}/{value}")).expect("set a gauge");
        assert_eq!(set.status, 200, "{set:?}");
    }
    let browser =
        chromium(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-nonfinite-profile"));
    let tab = open_dashboard(&browser, management);
    let mut shown = Value::Null;
    let rendered = wait_until(PATIENCE, || {
        shown = eval_json(
            &tab,
            "Object.fromEntries([...document.querySelectorAll('#metrics tbody tr')]\
             .map(r => [r.cells[0].textContent, r.cells[4].textContent]))",
        );
        cases
            .iter()
            .all(|(name, _, text)| shown[*name].as_str() == Some(*text))
    });
    assert!(
        rendered,
        "the metrics table shows {shown}; error: {}",
        eval_json(&tab, "document.getElementById('error').textContent")
    );
    assert_eq!(
        eval_json(&tab, "!document.getElementById('admin').hidden"),
        true,
        "the admin controls did not appear"
    );
    // It keeps refreshing: the footer's time changes and no error shows.
    let updated = || eval_json(&tab, "document.getElementById('updated').textContent");
    let before = updated();
    assert!(
        wait_until(PATIENCE, || updated() != before),
        "the page stopped refreshing"
    );
    assert_eq!(
        eval_json(&tab, "document.getElementById('error').style.display"),
        "none",
        "the page reports an error"
    );
    // `/traffic` spells them as Prometheus does, where JSON has no number for them.
    let mut table = Value::Null;
    let listed = wait_until(PATIENCE, || {
        table = http_get(management, "/traffic")
            .ok()
            .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
            .map_or(Value::Null, |traffic| traffic["metrics"].clone());
        cases.iter().all(|(name, _, shown)| {
            table
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["name"] == *name && m["value"] == *shown)
        })
    });
    assert!(
        listed,
        "/traffic lacks the gauges as NaN, +Inf, -Inf: {table}"
    );

    screenshot(&tab, "management-dashboard-nonfinite.png");
}

#[test]
fn dashboard_in_chromium_charts_the_worker_count_over_time() {
    let program = Program::start("hello", &[("PORT", "0"), ("WIX_CLUSTER_WORKERS", "1")]);
    let management = program.management_addr();
    program.wait_for_200(management, "/health/ready");
    let browser = chromium(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-count-profile"));
    let tab = open_dashboard(&browser, management);
    let now = || {
        eval_json(&tab, "document.getElementById('count-now').textContent")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let highest = || {
        eval_json(
            &tab,
            "Number(document.getElementById('count-chart').dataset.max ?? -1)",
        )
        .as_f64()
        .unwrap_or(-1.0)
    };
    assert!(
        wait_until(PATIENCE, || now() == "now 1 ready of 1"),
        "the count reads {:?}",
        now()
    );
    assert_eq!(highest(), 1.0, "one worker so far");
    // Two more workers (SIGTTIN twice, as an operator or the autoscaler would ask).
    send_signal(program.pid(), nix::sys::signal::Signal::SIGTTIN);
    program.wait_for_workers(2);
    send_signal(program.pid(), nix::sys::signal::Signal::SIGTTIN);
    assert!(
        wait_until(PATIENCE, || now() == "now 3 ready of 3" && highest() == 3.0),
        "the count reads {:?}, the chart's top {}",
        now(),
        highest()
    );
    let lines = eval_json(
        &tab,
        "document.querySelectorAll('#count-chart polyline').length",
    );
    assert_eq!(lines, 2, "desired and ready drawn");
    screenshot(&tab, "management-dashboard-count.png");
}
