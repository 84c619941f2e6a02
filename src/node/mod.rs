//! PLACEHOLDER: being written.

pub mod audit;
pub mod facts;
