//! Crockford Base32 of integers, the alphabet of the serials.
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyString};

use super::errors::{base32_err, MalformedSerial};
use crate::{base32, serial};

/// Crockford Base32 of a non-negative int as exactly `length` symbols (1-25).
#[pyfunction]
#[pyo3(signature = (value, length = 20))]
pub(crate) fn crockford_encode(value: &Bound<'_, PyAny>, length: usize) -> PyResult<String> {
    if !(1..=base32::MAX_SYMBOLS).contains(&length) {
        return Err(PyValueError::new_err("length must be between 1 and 25"));
    }
    let hi = if length == base32::MAX_SYMBOLS {
        u128::MAX >> 3
    } else {
        (1u128 << (5 * length)) - 1
    };
    if !value.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err("value must be an int"));
    }
    let v = value
        .extract::<u128>()
        .ok()
        .filter(|&v| v <= hi)
        .ok_or_else(|| PyValueError::new_err(format!("value does not fit in {length} symbols")))?;
    Ok(base32::encode(v, length).expect("range checked"))
}

/// Integer value of Crockford Base32 text (1-25 symbols; case-insensitive, O=0, I=L=1, '-'
/// ignored). Raises MalformedSerial.
#[pyfunction]
pub(crate) fn crockford_decode(text: &Bound<'_, PyString>) -> PyResult<u128> {
    if text.len()? > 4 * serial::MAX_TEXT_LEN {
        return Err(MalformedSerial::new_err("text is too long"));
    }
    let t = text
        .to_cow()
        .map_err(|_| MalformedSerial::new_err("text is not valid Unicode"))?;
    base32::decode(t.as_bytes()).map_err(base32_err)
}
