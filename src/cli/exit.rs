//! The documented exit codes, and how every outcome maps onto them.

use crate::client::{CallOutcome, NodeState, RolloutOutcome};

/// Exit codes of `baton`, as docs/CLI.md documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: every targeted node replied OK.
    Ok = 0,
    /// 1: at least one node replied with a failure.
    Failed = 1,
    /// 2: usage, input or configuration error; nothing was sent.
    Usage = 2,
    /// 3: at least one targeted node did not reply, and none failed.
    NoResponse = 3,
    /// 4: nothing matched.
    NothingMatched = 4,
    /// 5: the broker could not be reached or refused us.
    Broker = 5,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The exit code for a finished call: failures first, then silence, then nothing at all.
    pub fn for_outcome(outcome: &CallOutcome) -> Exit {
        let counts = outcome.counts();
        if counts.failed > 0 {
            Exit::Failed
        } else if counts.no_response > 0 {
            Exit::NoResponse
        } else if outcome.replies.is_empty() {
            Exit::NothingMatched
        } else {
            Exit::Ok
        }
    }

    /// The exit code for a rollout: a rollout that stopped early failed (exit 1) even when
    /// it stopped on silent nodes only, since the skipped nodes never got the request; so did
    /// one whose health check failed on a node.
    pub fn for_rollout(outcome: &RolloutOutcome) -> Exit {
        if outcome.stopped.is_some()
            || !outcome.call.skipped.is_empty()
            || outcome.nodes.values().any(|state| *state == NodeState::CheckFailed)
        {
            Exit::Failed
        } else {
            Exit::for_outcome(&outcome.call)
        }
    }

    /// The more serious of two results of one command, in the order the codes are decided:
    /// broker and usage errors, then failures, silence, nothing matched, success.
    pub fn worse(left: Exit, right: Exit) -> Exit {
        let rank = |exit: Exit| match exit {
            Exit::Ok => 0,
            Exit::NothingMatched => 1,
            Exit::NoResponse => 2,
            Exit::Failed => 3,
            Exit::Usage => 4,
            Exit::Broker => 5,
        };
        if rank(right) > rank(left) { right } else { left }
    }
}

/// The exit-code table shown in `baton --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  every targeted node replied OK
  1  at least one node replied with a failure or failed its --check, or a rollout stopped at --max-failures
  2  usage, input or configuration error (nothing was sent)
  3  at least one targeted node did not reply (and none failed)
  4  nothing matched
  5  the broker could not be reached or refused us";

/// An error that ends the command, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure { exit: Exit::Usage, error: error.into() }
    }

    pub fn broker(error: impl Into<anyhow::Error>) -> Failure {
        Failure { exit: Exit::Broker, error: error.into() }
    }
}

impl From<crate::client::ClientError> for Failure {
    fn from(error: crate::client::ClientError) -> Failure {
        let exit = if error.is_usage() { Exit::Usage } else { Exit::Broker };
        Failure { exit, error: error.into() }
    }
}
