//! Fetches the facts a waiting policy asks for ([`crate::policy::pending`]): DNS records and
//! policy-service answers. Every request runs under its own deadline and ends with an answer, failures
//! included; the requests of one round run concurrently on the session's own task.

pub mod policy_client;
pub mod table;

use std::time::Instant;

use futures_util::future::join_all;

use crate::net::resolve::NameResolver;
use crate::policy::pending::{DnsAnswer, FactAnswer};
use crate::policy::{FactRequest, Fetched};
use policy_client::PolicyClients;

/// What sessions fetch facts with. Cheap to share; built once per process, so that the
/// policy-service connections it pools outlive a reload (pools are keyed by the service and
/// its settings, so a reload that changes them starts fresh ones).
pub struct Lookups {
    resolver: Option<NameResolver>,
    policy: PolicyClients,
}

impl Lookups {
    /// `resolver` answers DNS requests; without one they fail for now, as with a dead
    /// nameserver.
    pub fn new(resolver: Option<NameResolver>) -> Self {
        Lookups {
            resolver,
            policy: PolicyClients::default(),
        }
    }

    /// One answer per request, in the same order.
    pub async fn fetch(&self, requests: &[FactRequest]) -> Vec<Fetched> {
        join_all(requests.iter().map(|r| self.fetch_one(r))).await
    }

    async fn fetch_one(&self, request: &FactRequest) -> Fetched {
        let started = Instant::now();
        let answer = match request {
            FactRequest::Dns { name, rtype } => FactAnswer::Dns(match &self.resolver {
                Some(resolver) => resolver.records(name, *rtype).await,
                None => DnsAnswer::TryAgain("no DNS resolver".into()),
            }),
            FactRequest::Policy {
                service, request, ..
            } => FactAnswer::Policy(self.policy.ask(service, request).await),
        };
        Fetched {
            request: request.clone(),
            answer,
            elapsed: started.elapsed(),
            // The resolver keeps its own TTL-honouring cache and does not say what it served.
            cached: false,
        }
    }
}
