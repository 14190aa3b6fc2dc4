//! Pure: the Service in front of the workers' HTTP port (metrics scraping, progress).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use spillway_api::defaults::WORKER_HTTP_PORT;

use super::{HTTP_PORT_NAME, child_meta, selector_labels};
use crate::validate::ValidPipeline;

/// The Service named after the pipeline, port `http` to the workers' named port `http`.
pub fn build_service(v: &ValidPipeline) -> Service {
    Service {
        metadata: child_meta(v, v.name.clone()),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&v.name)),
            ports: Some(vec![ServicePort {
                name: Some(HTTP_PORT_NAME.into()),
                port: WORKER_HTTP_PORT,
                target_port: Some(IntOrString::String(HTTP_PORT_NAME.into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{tests::pipeline, validate};

    #[test]
    fn selects_the_workers_on_the_named_port() {
        let s = build_service(&validate(&pipeline()).unwrap());
        assert_eq!(s.metadata.name.as_deref(), Some("events"));
        let spec = s.spec.unwrap();
        assert_eq!(spec.selector, Some(selector_labels("events")));
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.name.as_deref(), Some("http"));
        assert_eq!(port.port, WORKER_HTTP_PORT);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
    }
}
