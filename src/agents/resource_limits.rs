//! What `resource create` may change on a node, and the node's settings that widen it
//! (`[agents.resource]` in the node configuration).
//!
//! Writing `etc/passwd` and `etc/group` as root amounts to root unless it is limited: an
//! account given uid 0, root's shell pointed at a script, a caller added to `sudo`. So by
//! default `create` refuses uid and gid 0, leaves system accounts and groups (ids below
//! [`ResourceLimits::first_regular_id`]) to the packages that made them, gives no account a
//! system id, and refuses control characters (NUL, line breaks, escapes) in text fields. Each
//! limit can be lifted by the node's own configuration, never by a request.

use serde::{Deserialize, Serialize};

use super::ActionOutcome;
use crate::protocol::StatusCode;

/// The `[agents.resource]` table: the limits on `resource create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// The lowest uid and gid of a regular account; below it are system accounts and groups.
    #[serde(default = "default_first_regular_id")]
    pub first_regular_id: u64,
    /// Allow uid and gid 0 (root).
    #[serde(default)]
    pub allow_root_ids: bool,
    /// Allow changing system accounts and groups, and giving any account a system id.
    #[serde(default)]
    pub allow_system_accounts: bool,
    /// Allow control characters in text fields (comment, home, shell).
    #[serde(default)]
    pub allow_control_characters: bool,
}

fn default_first_regular_id() -> u64 {
    1000
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            first_regular_id: default_first_regular_id(),
            allow_root_ids: false,
            allow_system_accounts: false,
            allow_control_characters: false,
        }
    }
}

impl ResourceLimits {
    /// Checks a uid or gid `create` would write for `account`.
    pub fn check_id(&self, account: &str, key: &str, id: u64) -> Result<(), ActionOutcome> {
        if id == 0 && !self.allow_root_ids {
            return Err(refused(format!(
                "{account}: {key} 0 is root's; resource create does not make root accounts \
                 (set agents.resource.allow_root_ids = true on the node to allow it)"
            )));
        }
        if id != 0 && id < self.first_regular_id && !self.allow_system_accounts {
            return Err(refused(format!(
                "{account}: {key} {id} is a system id (below {}); resource create gives accounts regular ids only \
                 (set agents.resource.allow_system_accounts = true on the node to allow it)",
                self.first_regular_id
            )));
        }
        Ok(())
    }

    /// Checks that an existing account or group may be changed: not a system one, whose id is
    /// `current_id`.
    pub fn check_change(&self, kind: &str, name: &str, current_id: Option<u64>) -> Result<(), ActionOutcome> {
        let Some(id) = current_id.filter(|id| *id < self.first_regular_id) else {
            return Ok(());
        };
        if self.allow_system_accounts {
            return Ok(());
        }
        Err(refused(format!(
            "{kind} {name} is a system {kind} (id {id}, below {}); resource create does not change it \
             (set agents.resource.allow_system_accounts = true on the node to allow it)",
            self.first_regular_id
        )))
    }

    /// Checks a text field for control characters (NUL, line breaks, escapes, DEL).
    pub fn check_text(&self, key: &str, text: &str) -> Result<(), ActionOutcome> {
        if self.allow_control_characters || !text.chars().any(char::is_control) {
            return Ok(());
        }
        Err(refused(format!(
            "{key} {text:?} holds control characters; give plain text \
             (set agents.resource.allow_control_characters = true on the node to allow it)"
        )))
    }
}

fn refused(message: String) -> ActionOutcome {
    ActionOutcome::fail(StatusCode::InvalidData, message)
}
