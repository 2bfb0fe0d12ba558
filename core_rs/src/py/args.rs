//! Argument checks shared by the bindings: Python ints into ranged Rust integers (ValueError,
//! not OverflowError, when out of range), the bulk range of a batch, serial text.
use std::borrow::Cow;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyString};

use super::errors::serial_err;
use crate::serial::{self, SerialError};

pub(crate) const U32_MAX: i128 = u32::MAX as i128;

/// An int in `lo..=hi`, ValueError (not OverflowError) when out of range, TypeError if not int.
pub(crate) fn int_in(obj: &Bound<'_, PyAny>, name: &str, lo: i128, hi: i128) -> PyResult<i128> {
    if !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!("{name} must be an int")));
    }
    match obj.extract::<i128>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(PyValueError::new_err(format!(
            "{name} must be between {lo} and {hi}"
        ))),
    }
}

pub(crate) fn opt_int_in(
    obj: Option<&Bound<'_, PyAny>>,
    name: &str,
    lo: i128,
    hi: i128,
) -> PyResult<Option<i128>> {
    match obj {
        Some(o) if !o.is_none() => int_in(o, name, lo, hi).map(Some),
        _ => Ok(None),
    }
}

/// An optional key version (None: the current one).
pub(crate) fn opt_version(version: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u32>> {
    Ok(opt_int_in(version, "version", 0, U32_MAX)?.map(|v| v as u32))
}

/// The `threads` argument of the bulk calls: None or 0 for all cores, at most 64.
pub(crate) fn thread_count(threads: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
    Ok(opt_int_in(threads, "threads", 0, 64)?.unwrap_or(0) as usize)
}

/// `(batch_no, start, end)` of a bulk call: a u32 batch and `start <= end <= 2**32`, at most
/// `MAX_BULK` apart.
pub(crate) fn batch_range(
    batch_no: &Bound<'_, PyAny>,
    start: &Bound<'_, PyAny>,
    end: &Bound<'_, PyAny>,
) -> PyResult<(u32, u64, u64)> {
    let b = int_in(batch_no, "batch_no", 0, U32_MAX)? as u32;
    let start = int_in(start, "start", 0, U32_MAX + 1)? as u64;
    let end = int_in(end, "end", 0, U32_MAX + 1)? as u64;
    if start > end {
        return Err(PyValueError::new_err("start must not be greater than end"));
    }
    if end - start > serial::MAX_BULK {
        return Err(PyValueError::new_err(format!(
            "at most {} items per call; stream larger ranges in chunks",
            serial::MAX_BULK
        )));
    }
    Ok((b, start, end))
}

/// Text of a serial argument, or MalformedSerial when it cannot be one (too long, not UTF-8).
pub(crate) fn serial_text<'a>(s: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    // Length in code points first, so a 10 MB string is rejected without encoding it.
    if s.len()? > serial::MAX_TEXT_LEN {
        return Err(serial_err(SerialError::Malformed(
            "serial text is too long",
        )));
    }
    s.to_cow()
        .map_err(|_| serial_err(SerialError::Malformed("serial text is not valid Unicode")))
}
