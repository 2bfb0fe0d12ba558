//! The PyO3 bindings, one file per concern; `lib.rs` lists what the module exports.
//!
//! Everything here converts arguments, maps errors to the Python exceptions of `errors`, and
//! releases the GIL around bulk loops. The logic lives in the crate's other modules, which never
//! import pyo3.
pub(crate) mod args;
pub(crate) mod base32;
pub(crate) mod errors;
pub(crate) mod gs1;
pub(crate) mod json;
pub(crate) mod reqlog;
pub(crate) mod scheme;

use pyo3::prelude::*;

/// Version of the Rust core, for /health and the CLI.
#[pyfunction]
pub(crate) fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_semver() {
        assert_eq!(super::version().split('.').count(), 3);
    }
}
