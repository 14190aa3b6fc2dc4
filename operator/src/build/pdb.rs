//! Pure: the PodDisruptionBudget of the workers (one voluntary eviction at a time).

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, selector_labels};
use crate::validate::ValidPipeline;

/// `maxUnavailable: 1` over the workers; `None` when the pipeline runs no worker
/// (suspended or scaled to zero), so the stale budget is removed as an orphan.
pub fn build_pdb(v: &ValidPipeline) -> Option<PodDisruptionBudget> {
    (v.spec.effective_replicas() > 0).then(|| PodDisruptionBudget {
        metadata: child_meta(v, v.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&v.name)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{tests::pipeline, validate};

    #[test]
    fn one_eviction_at_a_time_and_none_when_suspended() {
        let mut v = validate(&pipeline()).unwrap();
        let pdb = build_pdb(&v).unwrap();
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.unwrap().match_labels,
            Some(selector_labels("events"))
        );
        v.spec.suspend = true;
        assert_eq!(build_pdb(&v), None);
        v.spec.suspend = false;
        v.spec.replicas = 0;
        assert_eq!(build_pdb(&v), None);
    }
}
