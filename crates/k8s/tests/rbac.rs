//! deploy/rbac.yaml grants exactly what the watchers use: list and watch on the kinds they
//! watch, nothing more.

use std::collections::BTreeSet;

#[test]
fn the_cluster_role_grants_list_and_watch_on_the_watched_kinds_only() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let role = serde_yaml::Deserializer::from_str(&text)
        .map(|d| <serde_yaml::Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let verbs: Vec<&str> = rule["verbs"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(verbs, ["list", "watch"], "{rule:?}");
        for group in rule["apiGroups"].as_sequence().unwrap() {
            for resource in rule["resources"].as_sequence().unwrap() {
                granted.insert(format!(
                    "{}/{}",
                    group.as_str().unwrap(),
                    resource.as_str().unwrap()
                ));
            }
        }
    }
    let watched: BTreeSet<String> = [
        "/pods",
        "/services",
        "/namespaces",
        "/nodes",
        "apps/replicasets",
        "apps/deployments",
        "apps/statefulsets",
        "apps/daemonsets",
        "batch/jobs",
        "batch/cronjobs",
        "discovery.k8s.io/endpointslices",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(granted, watched);
    assert_eq!(
        watched.len() as u64,
        nightjar_k8s::watch::WATCHED_KINDS,
        "a kind watched but not granted, or granted but not watched"
    );
}
