//! Whether a proxy reports as itself: the SPIFFE ID of its client certificate against the
//! identity its node claims.
//!
//! With client certificates required on the gRPC listener, each stream arrives with the
//! certificate its proxy presented. When that certificate carries a SPIFFE URI of the form
//! `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT` (what Istio, SPIRE and
//! cert-manager's csi-driver-spiffe issue), the node's claim is compared with it:
//!
//! - the namespace: when the node names one (`NAMESPACE` metadata), it must be the
//!   certificate's;
//! - the service account: the node's `SERVICE_ACCOUNT` metadata, or when it has none the
//!   service name it reports as (a VM's `node.cluster`), must be the certificate's.
//!
//! The trust domain is the CA's business and is not compared. Services that share one
//! service account can report as each other, as they can in the mesh's own authorization
//! rules. A certificate without a SPIFFE URI is not compared (the CA vouched for it); one
//! whose SPIFFE ID has another form is counted as `unrecognised`.
//!
//! Every comparison is counted in `meshscope_reporter_identity_checks_total` by outcome;
//! a mismatch is logged, and with `strict_reporter_identity` the stream is refused with
//! `PERMISSION_DENIED` (so is an unrecognised SPIFFE ID).

use std::net::SocketAddr;
use std::sync::Arc;

use meshscope_proto::pb::envoy::config::core::v3::Node;
use tonic::Status;
use tonic::codegen::http;
use tonic::transport::CertificateDer;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::warn;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::Collector;
use crate::identity::NodeIdentity;

pub const REPORTER_IDENTITY_CHECKS: &str = "meshscope_reporter_identity_checks_total";

/// Where a stream comes from: the peer's address and, over TLS, the certificates it
/// presented (its own first).
#[derive(Clone, Debug, Default)]
pub struct PeerConnection {
    pub addr: Option<SocketAddr>,
    pub certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl PeerConnection {
    /// Reads what tonic put in a request's extensions, over plain TCP or TLS.
    pub fn from_extensions(extensions: &http::Extensions) -> Self {
        if let Some(tls) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
            return Self {
                addr: tls.get_ref().remote_addr(),
                certificates: tls.peer_certs(),
            };
        }
        Self {
            addr: extensions
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr),
            certificates: None,
        }
    }

    /// The DER of the peer's own certificate, when it presented one.
    fn leaf(&self) -> Option<&[u8]> {
        self.certificates
            .as_ref()
            .and_then(|chain| chain.first())
            .map(|certificate| certificate.as_ref())
    }
}

/// A SPIFFE ID in the Kubernetes form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadSpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl WorkloadSpiffeId {
    /// Reads `spiffe://TD/ns/NS/sa/SA`; `None` for any other form.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?;
        let mut parts = rest.split('/');
        let trust_domain = parts.next().filter(|p| !p.is_empty())?;
        let (ns, namespace, sa, service_account) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if ns != "ns"
            || sa != "sa"
            || namespace.is_empty()
            || service_account.is_empty()
            || parts.next().is_some()
        {
            return None;
        }
        Some(Self {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        })
    }
}

/// The first `spiffe://` URI among a DER certificate's subject alternative names.
pub fn spiffe_uri(certificate_der: &[u8]) -> Option<String> {
    let (_, certificate) = X509Certificate::from_der(certificate_der).ok()?;
    let names = certificate.subject_alternative_name().ok()??;
    names
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some((*uri).to_owned()),
            _ => None,
        })
}

/// The outcome of comparing a certificate with a node's claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityVerdict {
    /// The certificate has no SPIFFE URI: nothing to compare.
    NoSpiffeId,
    /// The SPIFFE ID is not of the `ns/NS/sa/SA` form.
    Unrecognised {
        spiffe_id: String,
    },
    Match,
    Mismatch {
        spiffe_id: String,
        reason: String,
    },
}

impl IdentityVerdict {
    /// The `outcome` label of the counter.
    pub fn outcome(&self) -> &'static str {
        match self {
            IdentityVerdict::NoSpiffeId => "no_spiffe_id",
            IdentityVerdict::Unrecognised { .. } => "unrecognised",
            IdentityVerdict::Match => "match",
            IdentityVerdict::Mismatch { .. } => "mismatch",
        }
    }
}

/// Compares a node's claim with its certificate's SPIFFE ID, by the rule of the module
/// documentation.
pub fn compare(identity: &NodeIdentity, certificate_der: &[u8]) -> IdentityVerdict {
    let Some(uri) = spiffe_uri(certificate_der) else {
        return IdentityVerdict::NoSpiffeId;
    };
    let Some(id) = WorkloadSpiffeId::parse(&uri) else {
        return IdentityVerdict::Unrecognised { spiffe_id: uri };
    };
    match claim_differs(identity, &id) {
        None => IdentityVerdict::Match,
        Some(reason) => IdentityVerdict::Mismatch {
            spiffe_id: uri,
            reason,
        },
    }
}

/// How the node's claim differs from the SPIFFE ID, or `None` when it agrees.
pub fn claim_differs(identity: &NodeIdentity, id: &WorkloadSpiffeId) -> Option<String> {
    let claimed_namespace = &identity.service.namespace;
    if !claimed_namespace.is_empty() && *claimed_namespace != id.namespace {
        return Some(format!(
            "the node claims namespace {claimed_namespace:?}, the certificate is for {:?}",
            id.namespace
        ));
    }
    let (what, claimed_account) = match &identity.service_account {
        Some(account) => ("service account", account),
        None => ("service", &identity.service.name),
    };
    (*claimed_account != id.service_account).then(|| {
        format!(
            "the node claims {what} {claimed_account:?}, the certificate is for service account {:?}",
            id.service_account
        )
    })
}

impl Collector {
    /// Checks a stream's node against the client certificate of its connection; `Ok` when
    /// there is no certificate, no node to name (refused elsewhere), or when the identities
    /// agree or strict checking is off.
    pub fn check_reporter(
        &self,
        node: Option<&Node>,
        connection: &PeerConnection,
        stream: &'static str,
    ) -> Result<(), Status> {
        let Some(certificate) = connection.leaf() else {
            return Ok(());
        };
        let Some(identity) = node.and_then(|node| NodeIdentity::from_node(node).ok()) else {
            return Ok(());
        };
        let verdict = compare(&identity, certificate);
        metrics::counter!(REPORTER_IDENTITY_CHECKS, "outcome" => verdict.outcome()).increment(1);
        let strict = self.config.strict_reporter_identity;
        let refusal = match &verdict {
            IdentityVerdict::NoSpiffeId | IdentityVerdict::Match => return Ok(()),
            IdentityVerdict::Unrecognised { spiffe_id } => {
                warn!(
                    peer = ?connection.addr,
                    stream,
                    node = %identity.node_id,
                    spiffe_id,
                    strict,
                    "client certificate's SPIFFE ID is not of the ns/NAMESPACE/sa/ACCOUNT form"
                );
                format!(
                    "the client certificate's SPIFFE ID {spiffe_id} is not of the form spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT"
                )
            }
            IdentityVerdict::Mismatch { spiffe_id, reason } => {
                warn!(
                    peer = ?connection.addr,
                    stream,
                    node = %identity.node_id,
                    service = %identity.service.id(),
                    spiffe_id,
                    reason,
                    strict,
                    "a proxy reports as another identity than its certificate's"
                );
                format!(
                    "the reporter's identity does not match its client certificate {spiffe_id}: {reason}"
                )
            }
        };
        if strict {
            Err(Status::permission_denied(refusal))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::tests::node;

    fn id(uri: &str) -> WorkloadSpiffeId {
        WorkloadSpiffeId::parse(uri).unwrap()
    }

    #[test]
    fn spiffe_ids_of_the_kubernetes_form_are_read() {
        assert_eq!(
            WorkloadSpiffeId::parse("spiffe://cluster.local/ns/shop/sa/frontend"),
            Some(WorkloadSpiffeId {
                trust_domain: "cluster.local".into(),
                namespace: "shop".into(),
                service_account: "frontend".into(),
            })
        );
        for other in [
            "spiffe://cluster.local/ns/shop/sa/",
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/ns/shop/sa/frontend/extra",
            "spiffe://cluster.local/workload/frontend",
            "spiffe:///ns/shop/sa/frontend",
            "https://cluster.local/ns/shop/sa/frontend",
        ] {
            assert_eq!(WorkloadSpiffeId::parse(other), None, "{other}");
        }
    }

    #[test]
    fn a_claim_agrees_when_namespace_and_service_account_are_the_certificates() {
        let istio = |namespace: &str, account: &str| {
            let node = node(
                "sidecar-1",
                "",
                &[("NAMESPACE", namespace), ("SERVICE_ACCOUNT", account)],
                &[("app", "reviews")],
            );
            NodeIdentity::from_node(&node).unwrap()
        };
        let certificate = id("spiffe://cluster.local/ns/shop/sa/bookinfo-reviews");
        // The service is named by its label; the service account is what is compared.
        assert_eq!(
            claim_differs(&istio("shop", "bookinfo-reviews"), &certificate),
            None
        );
        let other_account = claim_differs(&istio("shop", "payments"), &certificate).unwrap();
        assert!(other_account.contains("\"payments\""), "{other_account}");
        let other_namespace =
            claim_differs(&istio("billing", "bookinfo-reviews"), &certificate).unwrap();
        assert!(other_namespace.contains("\"billing\""), "{other_namespace}");
    }

    #[test]
    fn a_node_without_a_service_account_is_compared_by_its_service_name() {
        // A VM: no metadata, named by node.cluster; any namespace of the certificate.
        let vm = NodeIdentity::from_node(&node("backend-vm-1", "backend", &[], &[])).unwrap();
        assert_eq!(
            claim_differs(&vm, &id("spiffe://td/ns/shop/sa/backend")),
            None
        );
        assert!(claim_differs(&vm, &id("spiffe://td/ns/shop/sa/payments")).is_some());
        // A namespace but no service account: the namespace and the name are compared.
        let ingress = NodeIdentity::from_node(&node(
            "ingress-1",
            "ingress",
            &[("NAMESPACE", "shop")],
            &[("app", "ingress")],
        ))
        .unwrap();
        assert_eq!(
            claim_differs(&ingress, &id("spiffe://td/ns/shop/sa/ingress")),
            None
        );
        assert!(claim_differs(&ingress, &id("spiffe://td/ns/edge/sa/ingress")).is_some());
    }
}
