//! The check catalog: the checks compiled in from `checks/` (and any `--checks-dir`),
//! composed with the `lib/*.sql` building blocks they use, and the parameters the
//! configuration gives them.

pub mod catalog;
pub mod params;
pub mod partition;
