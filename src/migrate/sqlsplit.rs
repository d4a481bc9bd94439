//! Moved to `migrate::parse` (squawk's parser); kept until apply.rs and status.rs import it
//! from there (helper S's files this session).

pub use crate::migrate::parse::split;
