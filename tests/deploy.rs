//! The shipped deployment files, checked by real tools: Kubernetes manifests against the
//! API schemas (kubernetes-validate, from PyPI), and what they promise about probes,
//! grace period and scraping.

use std::process::Command;
use std::time::Duration;

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/hello.yaml");

fn validate(path: &str) -> std::process::Output {
    Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", path])
        .output()
        .expect(
            "kubernetes-validate is installed (pip install kubernetes-validate; .ci/run does it)",
        )
}

#[test]
fn the_kubernetes_manifests_pass_the_schema_validator() {
    let out = validate(MANIFEST);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_validator_rejects_a_broken_manifest() {
    let broken = std::env::temp_dir().join(format!("wix-broken-{}.yaml", std::process::id()));
    let text = std::fs::read_to_string(MANIFEST).expect("manifest");
    std::fs::write(
        &broken,
        text.replace("containerPort: 8080", "containerPort: \"eight\""),
    )
    .expect("write");
    let out = validate(&broken.to_string_lossy());
    let _ = std::fs::remove_file(&broken);
    assert!(!out.status.success(), "a string port must not validate");
}

#[test]
fn the_deployment_probes_the_management_app_and_outlasts_the_drain() {
    // Read the YAML with PyYAML (kubernetes-validate's own dependency) and print facts.
    let script = r#"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dep = next(d for d in docs if d["kind"] == "Deployment")
pod = dep["spec"]["template"]
c = pod["spec"]["containers"][0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
env = {e["name"]: e["value"] for e in c["env"]}
print(c["livenessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["port"])
print(c["readinessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["port"])
print(pod["spec"]["terminationGracePeriodSeconds"])
print(pod["metadata"]["annotations"]["prometheus.io/scrape"], pod["metadata"]["annotations"]["prometheus.io/path"], pod["metadata"]["annotations"]["prometheus.io/port"])
print(ports["management"], env["WIX_CLUSTER_MANAGEMENT_ADDR"])
print(env.get("WIX_CLUSTER_DRAIN_DELAY", "0s"))
"#;
    let out = Command::new("python3")
        .args(["-c", script, MANIFEST])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let facts = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = facts.lines().collect();
    assert_eq!(lines[0], "/health/is_alive management");
    assert_eq!(lines[1], "/health/ready management");
    let grace = Duration::from_secs(lines[2].parse().expect("seconds"));
    // A stop reports not ready for the drain delay, then drains for up to the drain
    // timeout (the example's Graceful default); SIGKILL must come after both, with a
    // margin for the kubelet's and the master's own steps.
    let delay = humantime::parse_duration(lines[5]).expect("the drain delay");
    let needed = delay + wix_cluster::config::DEFAULT_DRAIN_TIMEOUT + Duration::from_secs(5);
    assert!(
        grace >= needed,
        "terminationGracePeriodSeconds {grace:?} must cover the drain delay {delay:?}, the \
         drain timeout and a 5 s margin ({needed:?})"
    );
    assert_eq!(lines[3], "true /metrics 8084");
    assert_eq!(lines[4], "8084 0.0.0.0:8084");
}
