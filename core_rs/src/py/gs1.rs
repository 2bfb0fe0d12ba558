//! The GS1 functions: check digits, GTIN and SSCC, Digital Link URIs and EPC URNs.
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::args::int_in;
use super::errors::{gs1_err, to_gs1};
use crate::gs1;

/// GS1 mod-10 check digit of 1-17 data digits.
#[pyfunction]
pub(crate) fn gs1_check_digit(data: &str) -> PyResult<u8> {
    gs1::check_digit(data).map_err(gs1_err)
}

/// A GTIN-8/12/13/14 validated and left-padded to 14 digits.
#[pyfunction]
pub(crate) fn normalize_gtin(gtin: &str) -> PyResult<String> {
    gs1::normalize_gtin(gtin).map_err(gs1_err)
}

#[pyfunction]
pub(crate) fn is_valid_gtin(gtin: &str) -> bool {
    gs1::is_valid_gtin(gtin)
}

/// SSCC-18 from an extension digit, a company prefix (6-12 digits) and a serial reference.
#[pyfunction]
pub(crate) fn build_sscc(
    extension: &Bound<'_, PyAny>,
    company_prefix: &str,
    serial_ref: &Bound<'_, PyAny>,
) -> PyResult<String> {
    let ext = int_in(extension, "extension", 0, 9).map_err(|e| to_gs1(extension.py(), e))?;
    let sref = int_in(serial_ref, "serial_ref", 0, 9_999_999_999)
        .map_err(|e| to_gs1(serial_ref.py(), e))?;
    gs1::build_sscc(ext as u32, company_prefix, sref as u64).map_err(gs1_err)
}

#[pyfunction]
pub(crate) fn is_valid_sscc(sscc: &str) -> bool {
    gs1::is_valid_sscc(sscc)
}

/// `https://{host}{prefix}/01/{gtin14}[/22/{cpv}][/10/{lot}][/21/{serial}][?17={expiry}]`.
#[pyfunction]
#[pyo3(signature = (host, gtin, serial = None, lot = None, expiry = None, prefix = "", cpv = None))]
pub(crate) fn digital_link(
    host: &str,
    gtin: &str,
    serial: Option<&str>,
    lot: Option<&str>,
    expiry: Option<&str>,
    prefix: &str,
    cpv: Option<&str>,
) -> PyResult<String> {
    let parts = gs1::LinkParts {
        cpv,
        lot,
        serial,
        expiry,
        prefix,
    };
    gs1::digital_link(host, gtin, parts).map_err(gs1_err)
}

/// `https://{host}{prefix}/00/{sscc}`.
#[pyfunction]
#[pyo3(signature = (host, sscc, prefix = ""))]
pub(crate) fn sscc_link(host: &str, sscc: &str, prefix: &str) -> PyResult<String> {
    gs1::sscc_link(host, sscc, prefix).map_err(gs1_err)
}

/// Parses a Digital Link URI or path into {"prefix": ..., AI: value, ..., "linkType": ...}.
#[pyfunction]
pub(crate) fn parse_digital_link<'py>(py: Python<'py>, uri: &str) -> PyResult<Bound<'py, PyDict>> {
    let pairs = gs1::parse_digital_link(uri).map_err(gs1_err)?;
    let d = PyDict::new(py);
    for (k, v) in pairs {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// `urn:epc:id:sgtin:CompanyPrefix.IndicatorItemRef.Serial`.
#[pyfunction]
pub(crate) fn sgtin_urn(gtin: &str, serial: &str, company_prefix_len: usize) -> PyResult<String> {
    gs1::sgtin_urn(gtin, serial, company_prefix_len).map_err(gs1_err)
}

/// `urn:epc:id:sscc:CompanyPrefix.ExtSerialRef`.
#[pyfunction]
pub(crate) fn sscc_urn(sscc: &str, company_prefix_len: usize) -> PyResult<String> {
    gs1::sscc_urn(sscc, company_prefix_len).map_err(gs1_err)
}
