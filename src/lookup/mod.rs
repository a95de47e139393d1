//! Fetches the facts a waiting policy asks for ([`crate::policy::pending`]): DNS records
//! today. Every request runs under its own deadline and ends with an answer, failures
//! included; the requests of one round run concurrently on the session's own task.

pub mod table;

use std::time::Instant;

use futures_util::future::join_all;

use crate::net::resolve::NameResolver;
use crate::policy::pending::{DnsAnswer, FactAnswer};
use crate::policy::{FactRequest, Fetched};

/// What sessions fetch facts with. Cheap to share.
pub struct Lookups {
    resolver: Option<NameResolver>,
}

impl Lookups {
    /// `resolver` answers DNS requests; without one they fail for now, as with a dead
    /// nameserver.
    pub fn new(resolver: Option<NameResolver>) -> Self {
        Lookups { resolver }
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
