//! Pure: the workers' NetworkPolicy — ingress only to their HTTP port (`/progress`,
//! `/metrics`, probes), only from the operator's pods and the scraping namespaces. The
//! kubelet's probes are not subject to NetworkPolicy; workers accept no other traffic.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{HTTP_PORT_NAME, child_meta, selector_labels};
use crate::config::WorkerNetworkPolicy;
use crate::validate::ValidPipeline;

/// The label every namespace carries with its own name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    )
}

fn namespace(name: Option<&str>) -> LabelSelector {
    LabelSelector {
        match_labels: name.and_then(|n| labels(&[(NAMESPACE_NAME_LABEL, n)])),
        ..Default::default()
    }
}

/// The policy of pipeline `v`'s worker pods.
pub fn build_network_policy(v: &ValidPipeline, p: &WorkerNetworkPolicy) -> NetworkPolicy {
    // The chart's operator pods (whatever the release is called).
    let operator = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: labels(&[
                ("app.kubernetes.io/part-of", "spillway"),
                ("app.kubernetes.io/component", "operator"),
            ]),
            ..Default::default()
        }),
        namespace_selector: Some(namespace(p.operator_namespace.as_deref())),
        ..Default::default()
    };
    let scrapers = p.scrape_namespaces.iter().map(|ns| NetworkPolicyPeer {
        namespace_selector: Some(namespace(Some(ns))),
        ..Default::default()
    });
    NetworkPolicy {
        metadata: child_meta(v, v.name.clone()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&v.name)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::String(HTTP_PORT_NAME.into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                from: Some(std::iter::once(operator).chain(scrapers).collect()),
            }]),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{tests::pipeline, validate};

    #[test]
    fn only_the_operator_and_the_scrapers_reach_the_http_port() {
        let v = validate(&pipeline()).unwrap();
        let p = WorkerNetworkPolicy {
            operator_namespace: Some("spillway-system".into()),
            scrape_namespaces: vec!["monitoring".into()],
        };
        let np = serde_json::to_value(build_network_policy(&v, &p)).unwrap();
        let spec = &np["spec"];
        assert_eq!(spec["policyTypes"], serde_json::json!(["Ingress"]));
        assert_eq!(
            spec["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
            "events"
        );
        let rules = spec["ingress"].as_array().unwrap();
        assert_eq!(rules.len(), 1, "one rule: nothing else is allowed in");
        assert_eq!(
            rules[0]["ports"],
            serde_json::json!([{"port": "http", "protocol": "TCP"}])
        );
        let from = rules[0]["from"].as_array().unwrap();
        assert_eq!(
            from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "spillway-system"
        );
        assert_eq!(
            from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "operator"
        );
        assert_eq!(
            from[1],
            serde_json::json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}})
        );
        // Outside the cluster, the operator's namespace is unknown: any namespace's
        // operator pods.
        let anywhere = WorkerNetworkPolicy {
            operator_namespace: None,
            scrape_namespaces: vec![],
        };
        let np = serde_json::to_value(build_network_policy(&v, &anywhere)).unwrap();
        assert_eq!(
            np["spec"]["ingress"][0]["from"][0]["namespaceSelector"],
            serde_json::json!({})
        );
    }
}
