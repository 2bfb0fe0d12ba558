//! The JSON depth guard (`jsondepth`).
use pyo3::prelude::*;

use crate::jsondepth;

/// Whether a JSON text's arrays and objects nest at most `limit` levels deep (strings skipped;
/// an unbalanced text: the highest level its running count reaches). One pass, without the GIL.
#[pyfunction]
pub(crate) fn json_depth_ok(py: Python<'_>, body: &[u8], limit: usize) -> bool {
    if body.len() < 1 << 16 {
        return jsondepth::depth_within(body, limit);
    }
    py.detach(|| jsondepth::depth_within(body, limit))
}
