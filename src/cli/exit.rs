//! The documented exit codes, and how every outcome maps onto them.

use crate::client::CallOutcome;

/// Exit codes of `baton`, as DESIGN.md documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
}

/// The exit-code table shown in `baton --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  every targeted node replied OK
  1  at least one node replied with a failure
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
