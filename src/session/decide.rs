//! Asks the policy about a stage. An all-in-memory decision is taken at once, on the command's
//! own path; a policy that waits for facts from the network gets them fetched, concurrently
//! and each under its deadline, and is asked again until it decides (see
//! [`crate::policy::pending`]).

use std::time::Instant;

use super::Session;
use crate::policy::pending::{FactAnswer, MAX_ROUNDS};
use crate::policy::{Decision, FactCache, FactRequest, Progress, Stage, TransactionState};

/// A decision that waits for facts: what to ask again once they are fetched.
pub(super) struct Waiting {
    stage: Stage,
    sender: Option<String>,
    recipient: Option<String>,
    state: TransactionState,
    needs: Vec<FactRequest>,
}

/// `decide!(self, stage, sender, recipient)`: the decision, waiting for facts only when the
/// policy needs some (the boxed future is built only then).
macro_rules! decide {
    ($session:expr, $stage:expr, $sender:expr, $recipient:expr) => {
        match $session.decide_now($stage, $sender, $recipient) {
            Ok(decision) => decision,
            Err(waiting) => Box::pin($session.wait_for(waiting)).await,
        }
    };
}
pub(super) use decide;

impl Session {
    /// The decision, if the policy can take it from what it has; else what it waits for.
    pub(super) fn decide_now(
        &mut self,
        stage: Stage,
        sender: Option<&str>,
        recipient: Option<&str>,
    ) -> Result<Decision, Box<Waiting>> {
        let mut state = self.policy_state.take().map(|b| *b).unwrap_or_default();
        let progress = self.ctx.listener.policy.decide(
            stage,
            &self.facts(sender, recipient),
            &mut state,
            &FactCache::default(),
        );
        match progress {
            Progress::Decided(decision) => {
                self.keep_state(state);
                Ok(decision)
            }
            Progress::Needs(needs) => Err(Box::new(Waiting {
                stage,
                sender: sender.map(str::to_owned),
                recipient: recipient.map(str::to_owned),
                state,
                needs,
            })),
        }
    }

    /// Fetches what `waiting` needs, round after round, until the policy decides.
    pub(super) async fn wait_for(&mut self, waiting: Box<Waiting>) -> Decision {
        let Waiting {
            stage,
            sender,
            recipient,
            mut state,
            mut needs,
        } = *waiting;
        let mut answers = FactCache::default();
        let started = Instant::now();
        for _ in 0..MAX_ROUNDS {
            for fetched in self.ctx.lookups.fetch(&needs).await {
                if fetched.answer.is_failure() {
                    self.log.warning(format_args!(
                        "{} failed after {} ms: {}",
                        fetched.request.describe(),
                        fetched.elapsed.as_millis(),
                        fetched.answer.describe()
                    ));
                }
                tracing::debug!(
                    stage = stage.log_word(),
                    request = %fetched.request.describe(),
                    answer = %fetched.answer.describe(),
                    elapsed_ms = fetched.elapsed.as_secs_f64() * 1000.0,
                    cached = fetched.cached,
                    "policy lookup"
                );
                // A policy server's trouble is logged as Postfix's attr_clnt logs it.
                if let FactAnswer::Policy(answer) = &fetched.answer {
                    for w in &answer.warnings {
                        self.log.warning(format_args!("{w}"));
                    }
                }
                answers.insert(fetched);
            }
            let facts = self.facts(sender.as_deref(), recipient.as_deref());
            match self
                .ctx
                .listener
                .policy
                .decide(stage, &facts, &mut state, &answers)
            {
                Progress::Decided(decision) => {
                    tracing::debug!(
                        stage = stage.log_word(),
                        lookups = answers.fetched().len(),
                        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "policy decided after lookups"
                    );
                    self.keep_state(state);
                    return decision;
                }
                Progress::Needs(more) => needs = more,
            }
        }
        self.keep_state(state);
        Decision::unfetched(&needs)
    }

    /// Keeps the session's one policy state, boxed only while it holds something.
    fn keep_state(&mut self, state: TransactionState) {
        if !state.is_clear() {
            self.policy_state = Some(Box::new(state));
        }
    }
}
