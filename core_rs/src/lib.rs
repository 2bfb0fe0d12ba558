//! Tracecode core: the serial scheme, PINs, keys and GS1 helpers, with a thin PyO3 layer.
//!
//! The logic modules below never import pyo3 and carry their own tests; `py/` holds the
//! bindings, one file per concern; this file is the module list and the export list of
//! `app._core` (documented in `app/_core.pyi`, checked by stubtest in `make lint`). Known
//! answers of the scheme live in `vectors/known_answers.txt` (`tests/known_answers.rs`).
use pyo3::prelude::*;
use pyo3::types::PyTuple;

pub mod base32;
pub mod ff1;
pub mod gs1;
pub mod jsondepth;
pub mod keys;
pub mod pin;
pub mod print;
pub mod reqlog;
pub mod serial;

mod py;

use py::errors::{ForgedSerial, Gs1Error, MalformedSerial, SerialError, UnknownKeyVersion};
use serial::{Status, VERDICT_SIZE};

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py::version, m)?)?;
    m.add_class::<py::scheme::PyScheme>()?;
    m.add_class::<py::reqlog::PyRequestLog>()?;
    m.add("REQUEST_BUCKETS", PyTuple::new(m.py(), reqlog::BUCKETS)?)?;
    m.add("SerialError", m.py().get_type::<SerialError>())?;
    m.add("MalformedSerial", m.py().get_type::<MalformedSerial>())?;
    m.add("ForgedSerial", m.py().get_type::<ForgedSerial>())?;
    m.add("UnknownKeyVersion", m.py().get_type::<UnknownKeyVersion>())?;
    m.add("Gs1Error", m.py().get_type::<Gs1Error>())?;
    m.add("SERIAL_LENGTH", serial::SERIAL_LEN)?;
    m.add("VERIFY_RECORD_SIZE", VERDICT_SIZE)?;
    m.add("VERIFY_OK", Status::Ok as u32)?;
    m.add("VERIFY_MALFORMED", Status::Malformed as u32)?;
    m.add("VERIFY_FORGED", Status::Forged as u32)?;
    m.add("MAX_BULK", serial::MAX_BULK)?;
    for f in [
        wrap_pyfunction!(py::base32::crockford_encode, m)?,
        wrap_pyfunction!(py::base32::crockford_decode, m)?,
        wrap_pyfunction!(py::gs1::gs1_check_digit, m)?,
        wrap_pyfunction!(py::gs1::normalize_gtin, m)?,
        wrap_pyfunction!(py::gs1::is_valid_gtin, m)?,
        wrap_pyfunction!(py::gs1::build_sscc, m)?,
        wrap_pyfunction!(py::gs1::is_valid_sscc, m)?,
        wrap_pyfunction!(py::gs1::digital_link, m)?,
        wrap_pyfunction!(py::gs1::sscc_link, m)?,
        wrap_pyfunction!(py::gs1::parse_digital_link, m)?,
        wrap_pyfunction!(py::gs1::sgtin_urn, m)?,
        wrap_pyfunction!(py::gs1::sscc_urn, m)?,
        wrap_pyfunction!(py::json::json_depth_ok, m)?,
    ] {
        m.add_function(f)?;
    }
    Ok(())
}
