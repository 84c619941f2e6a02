//! Message security: sealing and opening envelopes, the replay window, and TLS settings.
//!
//! This module knows nothing of brokers. It turns a payload into a signed [`Envelope`] and an
//! envelope off the wire back into a payload that can only exist once its signature checked out.
//!
//! PLACEHOLDER: being written.
