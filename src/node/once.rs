//! At most once per key. A tracked rollout's action requests carry `once = "rollout:<id>"`
//! (docs/PROTOCOL.md section 2), and the node remembers which keys it ran successfully, so a
//! resume that sends the action again to a node whose first answer was lost (the client was
//! killed, the reply expired, the broker's record of the rollout is a few events short) gets
//! that answer back instead of a second run. That is what lets `baton rollout resume` send to
//! every node not known to have succeeded without ever repeating one that did.
//!
//! The key is the `once` text with the agent, the action and the validated inputs: the same
//! key with other inputs is another request, and runs. The caller is not part of it, so a
//! resume from another CI runner (another caller) is covered too; authorization has already
//! admitted the request by the time it gets here.
//!
//! Only successes are remembered: a resume after a node was fixed runs a failed action again,
//! for real. A request arriving while the first run is still going waits for that run and
//! answers with its outcome (success or not). Memory only, bounded by [`ONCE_CAPACITY`]
//! successes and [`ONCE_BUDGET_BYTES`], the oldest forgotten first (outputs over
//! [`ONCE_MAX_OUTPUT_BYTES`] are not kept: a repeat is answered without them): a node
//! restarted between the run and the resume runs the action again, as it would without this
//! table.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value};
use tokio::sync::watch;
use uuid::Uuid;

use crate::agents::ActionOutcome;

/// How many successful keys a node remembers (a few hundred bytes each with small outputs).
pub const ONCE_CAPACITY: usize = 4096;

/// How many bytes of remembered outputs a node keeps in all; the oldest are forgotten first.
pub const ONCE_BUDGET_BYTES: usize = 16 << 20;

/// A success whose outputs are larger than this is remembered without them: a repeat is still
/// answered (and not run), with the status and a message saying the output was not kept.
pub const ONCE_MAX_OUTPUT_BYTES: usize = 256 << 10;

/// What one earlier run answered.
#[derive(Debug, Clone)]
pub struct Earlier {
    /// The request that ran it.
    pub request_id: Uuid,
    pub outcome: ActionOutcome,
}

/// What to do with a request that carries a `once` key.
pub enum Claim<'a> {
    /// Nobody has run it: run it, then [`Running::finish`].
    Run(Running<'a>),
    /// It succeeded before: answer with this, run nothing.
    Earlier(Earlier),
    /// Another request is running it now: [`wait`] for its outcome.
    Wait(watch::Receiver<Option<Earlier>>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    once: String,
    agent: String,
    action: String,
    /// The inputs as canonical JSON (serde_json's maps are sorted).
    inputs: String,
}

enum Entry {
    Running(watch::Receiver<Option<Earlier>>),
    Succeeded(Earlier),
}

/// The keys this node has run, or is running. One per pipeline.
#[derive(Default)]
pub struct OnceTable {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// Succeeded keys with their size in bytes, oldest first: the order they are forgotten in.
    succeeded: VecDeque<(Key, usize)>,
    /// The sizes in `succeeded`, summed.
    bytes: usize,
}

impl OnceTable {
    /// Claims `once` for a request with id `request_id`.
    pub fn claim(
        &self,
        once: &str,
        agent: &str,
        action: &str,
        inputs: &Map<String, Value>,
        request_id: Uuid,
    ) -> Claim<'_> {
        let key = Key {
            once: once.to_owned(),
            agent: agent.to_owned(),
            action: action.to_owned(),
            inputs: serde_json::to_string(inputs).unwrap_or_default(),
        };
        let mut inner = self.lock();
        match inner.entries.get(&key) {
            Some(Entry::Succeeded(earlier)) => Claim::Earlier(earlier.clone()),
            Some(Entry::Running(receiver)) => Claim::Wait(receiver.clone()),
            None => {
                let (sender, receiver) = watch::channel(None);
                inner.entries.insert(key.clone(), Entry::Running(receiver));
                Claim::Run(Running { table: self, key: Some(key), request_id, sender })
            }
        }
    }

    /// How many keys are remembered or running (for tests and stats).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change below is one map operation and one queue operation; a panic between
        // them leaves at worst a key remembered twice in the queue, which forgets it early.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A claimed key whose action this request runs. Dropped without [`Running::finish`] (the
/// task was cancelled), the key is released, and whoever waited answers that it was not run.
pub struct Running<'a> {
    table: &'a OnceTable,
    key: Option<Key>,
    request_id: Uuid,
    sender: watch::Sender<Option<Earlier>>,
}

impl Running<'_> {
    /// Records the run's outcome: remembered if it succeeded, released if not; either way it
    /// answers every request that waited.
    pub fn finish(mut self, outcome: &ActionOutcome) {
        let Some(key) = self.key.take() else { return };
        let earlier = Earlier { request_id: self.request_id, outcome: outcome.clone() };
        let mut inner = self.table.lock();
        if outcome.status.is_ok() {
            let kept = kept(&earlier);
            let size = key.once.len()
                + key.agent.len()
                + key.action.len()
                + key.inputs.len()
                + output_bytes(&kept.outcome);
            inner.entries.insert(key.clone(), Entry::Succeeded(kept));
            inner.succeeded.push_back((key, size));
            inner.bytes += size;
            while inner.succeeded.len() > ONCE_CAPACITY || inner.bytes > ONCE_BUDGET_BYTES {
                let Some((oldest, size)) = inner.succeeded.pop_front() else { break };
                inner.entries.remove(&oldest);
                inner.bytes -= size;
            }
        } else {
            inner.entries.remove(&key);
        }
        drop(inner);
        self.sender.send_replace(Some(earlier));
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.table.lock().entries.remove(&key);
        }
    }
}

/// The bytes an outcome's message and outputs take (as JSON).
fn output_bytes(outcome: &ActionOutcome) -> usize {
    outcome.message.len() + serde_json::to_string(&outcome.data).map_or(0, |text| text.len())
}

/// What is remembered of a success: all of it, or without outputs over
/// [`ONCE_MAX_OUTPUT_BYTES`].
fn kept(earlier: &Earlier) -> Earlier {
    let size = output_bytes(&earlier.outcome);
    if size <= ONCE_MAX_OUTPUT_BYTES {
        return earlier.clone();
    }
    let mut outcome = ActionOutcome::ok(Map::new());
    outcome.message = format!(
        "ran by request {} and succeeded; its output ({size} bytes) was too large to keep for a repeat",
        earlier.request_id
    );
    Earlier { request_id: earlier.request_id, outcome }
}

/// Waits for the run another request started; `None` if it was abandoned unfinished.
pub async fn wait(mut receiver: watch::Receiver<Option<Earlier>>) -> Option<Earlier> {
    receiver.wait_for(Option::is_some).await.ok().and_then(|earlier| earlier.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::StatusCode;

    fn inputs(name: &str) -> Map<String, Value> {
        serde_json::json!({ "name": name }).as_object().cloned().unwrap_or_default()
    }

    fn ok() -> ActionOutcome {
        ActionOutcome::ok(inputs("done"))
    }

    #[test]
    fn a_success_is_remembered_and_a_failure_is_not() {
        let table = OnceTable::default();
        let first = Uuid::new_v4();
        let Claim::Run(running) = table.claim("rollout:a", "hello", "greet", &inputs("x"), first) else {
            panic!("the first claim runs");
        };
        running.finish(&ok());
        match table.claim("rollout:a", "hello", "greet", &inputs("x"), Uuid::new_v4()) {
            Claim::Earlier(earlier) => {
                assert_eq!(earlier.request_id, first);
                assert_eq!(earlier.outcome, ok());
            }
            _ => panic!("a second claim of a success answers with it"),
        }
        // Other inputs, another action or another key: another request.
        assert!(matches!(
            table.claim("rollout:a", "hello", "greet", &inputs("y"), Uuid::new_v4()),
            Claim::Run(_)
        ));
        assert!(matches!(
            table.claim("rollout:a", "hello", "wave", &inputs("x"), Uuid::new_v4()),
            Claim::Run(_)
        ));
        assert!(matches!(
            table.claim("rollout:b", "hello", "greet", &inputs("x"), Uuid::new_v4()),
            Claim::Run(_)
        ));

        let Claim::Run(running) = table.claim("rollout:c", "hello", "greet", &inputs("x"), Uuid::new_v4())
        else {
            panic!("runs");
        };
        running.finish(&ActionOutcome::fail(StatusCode::Aborted, "disk full"));
        assert!(
            matches!(table.claim("rollout:c", "hello", "greet", &inputs("x"), Uuid::new_v4()), Claim::Run(_)),
            "a failed run is run again"
        );
    }

    #[tokio::test]
    async fn a_request_during_the_run_waits_for_its_outcome() {
        let table = OnceTable::default();
        let first = Uuid::new_v4();
        let Claim::Run(running) = table.claim("rollout:a", "hello", "greet", &inputs("x"), first) else {
            panic!("runs");
        };
        let Claim::Wait(receiver) = table.claim("rollout:a", "hello", "greet", &inputs("x"), Uuid::new_v4())
        else {
            panic!("the second waits");
        };
        let waiter = tokio::spawn(wait(receiver));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "nothing to answer before the run ends");
        running.finish(&ok());
        let earlier = waiter.await.expect("join").expect("an outcome");
        assert_eq!(earlier.request_id, first);
    }

    #[tokio::test]
    async fn an_abandoned_run_releases_its_key() {
        let table = OnceTable::default();
        let Claim::Run(running) = table.claim("rollout:a", "hello", "greet", &inputs("x"), Uuid::new_v4())
        else {
            panic!("runs");
        };
        let Claim::Wait(receiver) = table.claim("rollout:a", "hello", "greet", &inputs("x"), Uuid::new_v4())
        else {
            panic!("waits");
        };
        drop(running);
        assert!(wait(receiver).await.is_none(), "the waiter learns nobody finished");
        assert!(table.is_empty());
        assert!(matches!(
            table.claim("rollout:a", "hello", "greet", &inputs("x"), Uuid::new_v4()),
            Claim::Run(_)
        ));
    }

    #[test]
    fn large_outputs_are_not_kept_and_the_budget_forgets_the_oldest() {
        let table = OnceTable::default();
        let big = ActionOutcome::ok(inputs(&"x".repeat(ONCE_MAX_OUTPUT_BYTES + 1)));
        let first = Uuid::new_v4();
        let Claim::Run(running) = table.claim("rollout:big", "hello", "greet", &inputs("x"), first) else {
            panic!("runs");
        };
        running.finish(&big);
        match table.claim("rollout:big", "hello", "greet", &inputs("x"), Uuid::new_v4()) {
            Claim::Earlier(earlier) => {
                assert!(earlier.outcome.status.is_ok() && earlier.outcome.data.is_empty());
                assert!(earlier.outcome.message.contains("too large to keep"), "{}", earlier.outcome.message);
            }
            _ => panic!("still answered, not run"),
        }
        // Successes just under the limit: the budget holds about 64 of them.
        let sized = ActionOutcome::ok(inputs(&"y".repeat(ONCE_MAX_OUTPUT_BYTES - 100)));
        for index in 0..100 {
            let Claim::Run(running) =
                table.claim(&format!("rollout:{index}"), "a", "b", &inputs("x"), Uuid::new_v4())
            else {
                panic!("runs");
            };
            running.finish(&sized);
        }
        assert!(table.lock().bytes <= ONCE_BUDGET_BYTES);
        assert!(table.len() < 70, "{}", table.len());
        assert!(matches!(table.claim("rollout:0", "a", "b", &inputs("x"), Uuid::new_v4()), Claim::Run(_)));
        assert!(matches!(
            table.claim("rollout:99", "a", "b", &inputs("x"), Uuid::new_v4()),
            Claim::Earlier(_)
        ));
    }

    #[test]
    fn the_oldest_success_is_forgotten_first() {
        let table = OnceTable::default();
        for index in 0..=ONCE_CAPACITY {
            let Claim::Run(running) =
                table.claim(&format!("rollout:{index}"), "hello", "greet", &inputs("x"), Uuid::new_v4())
            else {
                panic!("runs");
            };
            running.finish(&ok());
        }
        assert_eq!(table.len(), ONCE_CAPACITY);
        assert!(matches!(
            table.claim("rollout:0", "hello", "greet", &inputs("x"), Uuid::new_v4()),
            Claim::Run(_)
        ));
        let last = format!("rollout:{ONCE_CAPACITY}");
        assert!(matches!(
            table.claim(&last, "hello", "greet", &inputs("x"), Uuid::new_v4()),
            Claim::Earlier(_)
        ));
    }
}
