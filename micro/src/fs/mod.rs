//! The filesystem side of a profile: a snapshot of what exists at start, and the Landlock rules
//! that make drift, exec and file controls hold on it.

pub mod compile;
pub mod rights;
pub mod scope;
pub mod walk;
