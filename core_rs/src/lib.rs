//! Tracecode core: the thin PyO3 layer over the serial scheme, PINs, keys and GS1 helpers.
//!
//! Everything here converts arguments, maps errors to the Python exceptions declared below, and
//! releases the GIL around bulk loops. The logic lives in the modules.
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyInt, PyList, PyString, PyTuple};

pub mod base32;
pub mod ff1;
pub mod gs1;
pub mod keys;
pub mod pin;
pub mod print;
pub mod serial;

use keys::KeyError;
use serial::{RecordFormat, SchemeError, SerialError, Status, UNDECODABLE, VERDICT_SIZE};

/// The Python exceptions, one per failure kind (STYLE rule 3); mapped to HTTP once in app/errors.py.
mod exceptions {
    use pyo3::exceptions::PyValueError;

    pyo3::create_exception!(
        app._core,
        SerialError,
        PyValueError,
        "Base class of every serial verification failure."
    );
    pyo3::create_exception!(
        app._core,
        MalformedSerial,
        SerialError,
        "Not 20 Crockford Base32 symbols (wrong length or character)."
    );
    pyo3::create_exception!(
        app._core,
        ForgedSerial,
        SerialError,
        "Well-formed, but the tag matches under no active key version."
    );
    pyo3::create_exception!(
        app._core,
        UnknownKeyVersion,
        SerialError,
        "A key version that is not active was requested."
    );
    pyo3::create_exception!(
        app._core,
        Gs1Error,
        PyValueError,
        "Invalid GS1 data or Digital Link URI."
    );
}
use exceptions::{ForgedSerial, Gs1Error, MalformedSerial, UnknownKeyVersion};

fn serial_err(e: SerialError) -> PyErr {
    match e {
        SerialError::Malformed(msg) => MalformedSerial::new_err(msg),
        SerialError::Forged => {
            ForgedSerial::new_err("serial does not verify under any active key version")
        }
        SerialError::UnknownVersion(v) => {
            UnknownKeyVersion::new_err(format!("key version {v} is not active"))
        }
    }
}

fn key_err(e: KeyError) -> PyErr {
    match e {
        KeyError::MasterLength(n) => {
            PyValueError::new_err(format!("master key must be 32 bytes, got {n}"))
        }
        KeyError::Versions(msg) | KeyError::Purpose(msg) => PyValueError::new_err(msg),
        KeyError::UnknownVersion(v) => {
            UnknownKeyVersion::new_err(format!("key version {v} is not active"))
        }
    }
}

fn gs1_err(e: gs1::Gs1Error) -> PyErr {
    Gs1Error::new_err(e.0)
}

/// An int in `lo..=hi`, ValueError (not OverflowError) when out of range, TypeError if not int.
fn int_in(obj: &Bound<'_, PyAny>, name: &str, lo: i128, hi: i128) -> PyResult<i128> {
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

fn opt_int_in(
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

const U32_MAX: i128 = u32::MAX as i128;

/// `(batch_no, start, end)` of a bulk call: a u32 batch and `start <= end <= 2**32`, at most
/// `MAX_BULK` apart.
fn batch_range(
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
fn serial_text<'a>(s: &'a Bound<'_, PyString>) -> PyResult<std::borrow::Cow<'a, str>> {
    // Length in code points first, so a 10 MB string is rejected without encoding it.
    if s.len()? > serial::MAX_TEXT_LEN {
        return Err(serial_err(SerialError::Malformed(
            "serial text is too long",
        )));
    }
    s.to_cow()
        .map_err(|_| serial_err(SerialError::Malformed("serial text is not valid Unicode")))
}

/// The serial scheme under a set of active key versions (keys derived from one master secret).
#[pyclass(frozen, module = "app._core", name = "Scheme")]
struct PyScheme {
    inner: serial::Scheme,
}

#[pymethods]
impl PyScheme {
    #[new]
    #[pyo3(signature = (master_key, versions, current_version, pin_length = pin::DEFAULT_LEN as i64))]
    fn new(
        master_key: &[u8],
        versions: Vec<Bound<'_, PyAny>>,
        current_version: &Bound<'_, PyAny>,
        pin_length: i64,
    ) -> PyResult<Self> {
        let versions = versions
            .iter()
            .map(|v| int_in(v, "key version", 1, U32_MAX).map(|v| v as u32))
            .collect::<PyResult<Vec<u32>>>()?;
        let current = int_in(current_version, "current_version", 1, U32_MAX)? as u32;
        let pin_length = usize::try_from(pin_length).unwrap_or(0);
        let inner = serial::Scheme::new(master_key, &versions, current, pin_length).map_err(
            |e| match e {
                SchemeError::Key(k) => key_err(k),
                SchemeError::PinLength(n) => PyValueError::new_err(format!(
                    "pin_length must be between {} and {}, got {n}",
                    pin::MIN_LEN,
                    pin::MAX_LEN
                )),
            },
        )?;
        Ok(Self { inner })
    }

    /// Active key versions, in the order given.
    #[getter]
    fn versions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.versions())
    }

    #[getter]
    fn current_version(&self) -> u32 {
        self.inner.current_version()
    }

    #[getter]
    fn pin_length(&self) -> usize {
        self.inner.pin_length()
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.inner)
    }

    /// The 20-character serial of (batch_no, index) under `version` (default: current).
    #[pyo3(signature = (batch_no, index, version = None))]
    fn serial(
        &self,
        batch_no: &Bound<'_, PyAny>,
        index: &Bound<'_, PyAny>,
        version: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let b = int_in(batch_no, "batch_no", 0, U32_MAX)? as u32;
        let i = int_in(index, "index", 0, U32_MAX)? as u32;
        let v = opt_int_in(version, "version", 0, U32_MAX)?.map(|v| v as u32);
        let s = self.inner.serial(b, i, v).map_err(serial_err)?;
        Ok(s.iter().map(|&c| c as char).collect())
    }

    /// (batch_no, index, key_version) of a genuine serial.
    fn verify(&self, serial: &Bound<'_, PyString>) -> PyResult<(u32, u32, u32)> {
        let text = serial_text(serial)?;
        let v = self.inner.verify(text.as_bytes()).map_err(serial_err)?;
        Ok((v.batch_no, v.index, v.version))
    }

    /// The PIN of a genuine serial.
    fn pin(&self, serial: &Bound<'_, PyString>) -> PyResult<String> {
        let text = serial_text(serial)?;
        self.inner.pin(text.as_bytes()).map_err(serial_err)
    }

    /// Whether `pin` is the PIN of a genuine serial (constant-time comparison).
    fn check_pin(&self, serial: &Bound<'_, PyString>, pin: &Bound<'_, PyString>) -> PyResult<bool> {
        let text = serial_text(serial)?;
        let expected = self.inner.pin(text.as_bytes()).map_err(serial_err)?;
        if pin.len()? > pin::MAX_LEN {
            return Ok(false);
        }
        let candidate = pin.to_cow().unwrap_or_default();
        Ok(pin::pin_eq(expected.as_bytes(), candidate.as_bytes()))
    }

    /// Fixed-width records for indexes start..end of a batch, generated without the GIL.
    #[pyo3(signature = (batch_no, start, end, with_pins = true, version = None, threads = None, newline = false))]
    #[allow(clippy::too_many_arguments)]
    fn generate<'py>(
        &self,
        py: Python<'py>,
        batch_no: &Bound<'py, PyAny>,
        start: &Bound<'py, PyAny>,
        end: &Bound<'py, PyAny>,
        with_pins: bool,
        version: Option<&Bound<'py, PyAny>>,
        threads: Option<&Bound<'py, PyAny>>,
        newline: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (b, start, end) = batch_range(batch_no, start, end)?;
        let version = opt_int_in(version, "version", 0, U32_MAX)?.map(|v| v as u32);
        let threads = opt_int_in(threads, "threads", 0, 64)?.unwrap_or(0) as usize;
        let fmt = RecordFormat {
            pins: with_pins,
            newline,
        };
        let width = fmt.width(self.inner.pin_length());
        let n = (end - start) as usize;
        // Fail on an inactive version before allocating.
        if let Some(v) = version {
            if !self.inner.versions().contains(&v) {
                return Err(serial_err(SerialError::UnknownVersion(v)));
            }
        }
        let start = u32::try_from(start).unwrap_or(u32::MAX);
        PyBytes::new_with(py, n * width, |buf| {
            py.detach(|| {
                self.inner
                    .generate_into(b, start, fmt, version, threads, buf)
            })
            .map_err(serial_err)
        })
    }

    /// Printer-file lines of indexes `[start, end)` without the GIL: `kind="outer"` gives
    /// `seq,SERIAL,{url_prefix}SERIAL\n`, `kind="inner"` gives `seq,PIN\n`; seq = index + seq_base.
    #[pyo3(signature = (batch_no, start, end, kind, url_prefix = "", seq_base = 1, version = None, threads = None))]
    #[allow(clippy::too_many_arguments)]
    fn print_lines<'py>(
        &self,
        py: Python<'py>,
        batch_no: &Bound<'py, PyAny>,
        start: &Bound<'py, PyAny>,
        end: &Bound<'py, PyAny>,
        kind: &str,
        url_prefix: &str,
        seq_base: u32,
        version: Option<&Bound<'py, PyAny>>,
        threads: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (b, start, end) = batch_range(batch_no, start, end)?;
        let kind = match kind {
            "outer" => print::Kind::Outer,
            "inner" => print::Kind::Inner,
            _ => return Err(PyValueError::new_err("kind must be 'outer' or 'inner'")),
        };
        if url_prefix.len() > 1024 {
            return Err(PyValueError::new_err(
                "url_prefix is longer than 1024 bytes",
            ));
        }
        let seq_base = u64::from(seq_base);
        let version = opt_int_in(version, "version", 0, U32_MAX)?.map(|v| v as u32);
        let threads = opt_int_in(threads, "threads", 0, 64)?.unwrap_or(0) as usize;
        let n = (end - start) as usize;
        let start = u32::try_from(start).unwrap_or(u32::MAX);
        let prefix = url_prefix.as_bytes();
        let parts = py
            .detach(|| {
                print::print_parts(
                    &self.inner,
                    b,
                    start,
                    n,
                    kind,
                    prefix,
                    seq_base,
                    version,
                    threads,
                )
            })
            .map_err(serial_err)?;
        let total = parts.iter().map(Vec::len).sum();
        PyBytes::new_with(py, total, |buf| {
            let mut at = 0;
            for part in &parts {
                buf[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Ok(())
        })
    }

    /// Verifies fixed-width records (serial = first 20 bytes of each record) without the GIL.
    /// Returns 16 bytes per record, little-endian `<IIII`: status, batch_no, index, version.
    #[pyo3(signature = (records, record_size = serial::SERIAL_LEN, threads = None))]
    fn verify_buffer<'py>(
        &self,
        py: Python<'py>,
        records: &[u8],
        record_size: usize,
        threads: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if record_size < serial::SERIAL_LEN {
            return Err(PyValueError::new_err("record_size must be at least 20"));
        }
        if !records.len().is_multiple_of(record_size) {
            return Err(PyValueError::new_err(
                "buffer length is not a multiple of record_size",
            ));
        }
        let threads = opt_int_in(threads, "threads", 0, 64)?.unwrap_or(0) as usize;
        let n = records.len() / record_size;
        PyBytes::new_with(py, n * VERDICT_SIZE, |out| {
            py.detach(|| {
                self.inner
                    .verify_records(records, record_size, threads, out)
            });
            Ok(())
        })
    }

    /// Per-item (status, batch_no, index, version) for a sequence of serials; never raises per
    /// item (a non-str item is malformed).
    #[pyo3(signature = (serials, threads = None))]
    fn verify_many<'py>(
        &self,
        py: Python<'py>,
        serials: &Bound<'py, PyAny>,
        threads: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        if serials.is_instance_of::<PyString>() || serials.is_instance_of::<PyBytes>() {
            return Err(PyTypeError::new_err(
                "serials must be a sequence of str (use verify_buffer for bytes)",
            ));
        }
        let threads = opt_int_in(threads, "threads", 0, 64)?.unwrap_or(0) as usize;
        let mut xs: Vec<u128> = Vec::with_capacity(serials.len().unwrap_or(0));
        for item in serials.try_iter()? {
            let item = item?;
            let x = match item.cast::<PyString>() {
                Ok(s) => serial_text(s)
                    .ok()
                    .and_then(|t| serial::parse(t.as_bytes()).ok())
                    .unwrap_or(UNDECODABLE),
                Err(_) => UNDECODABLE,
            };
            xs.push(x);
        }
        let mut out = vec![0u8; xs.len() * VERDICT_SIZE];
        py.detach(|| self.inner.verify_decoded(&xs, threads, &mut out));
        let items = out.chunks_exact(VERDICT_SIZE).map(|r| {
            let f = |k: usize| u32::from_le_bytes(r[4 * k..4 * k + 4].try_into().expect("4 bytes"));
            (f(0), f(1), f(2), f(3))
        });
        PyList::new(py, items)
    }

    /// A key for another purpose (e.g. "export"), 16-64 bytes, for an active version.
    #[pyo3(signature = (purpose, version, length = 32))]
    fn derive<'py>(
        &self,
        py: Python<'py>,
        purpose: &str,
        version: &Bound<'py, PyAny>,
        length: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let version = int_in(version, "version", 0, U32_MAX)? as u32;
        let mut key = self
            .inner
            .derive(purpose, version, length)
            .map_err(key_err)?;
        let out = PyBytes::new(py, &key);
        zeroize::Zeroize::zeroize(&mut key);
        Ok(out)
    }
}

/// Version of the Rust core, for /health and the CLI.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Crockford Base32 of a non-negative int as exactly `length` symbols (1-25).
#[pyfunction]
#[pyo3(signature = (value, length = serial::SERIAL_LEN))]
fn crockford_encode(value: &Bound<'_, PyAny>, length: usize) -> PyResult<String> {
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
fn crockford_decode(text: &Bound<'_, PyString>) -> PyResult<u128> {
    if text.len()? > 4 * serial::MAX_TEXT_LEN {
        return Err(MalformedSerial::new_err("text is too long"));
    }
    let t = text
        .to_cow()
        .map_err(|_| MalformedSerial::new_err("text is not valid Unicode"))?;
    base32::decode(t.as_bytes()).map_err(|e| match e {
        base32::DecodeError::BadSymbol => {
            MalformedSerial::new_err("character outside Crockford Base32")
        }
        base32::DecodeError::BadLength => MalformedSerial::new_err("must have 1 to 25 symbols"),
    })
}

/// GS1 mod-10 check digit of 1-17 data digits.
#[pyfunction]
fn gs1_check_digit(data: &str) -> PyResult<u8> {
    gs1::check_digit(data).map_err(gs1_err)
}

/// A GTIN-8/12/13/14 validated and left-padded to 14 digits.
#[pyfunction]
fn normalize_gtin(gtin: &str) -> PyResult<String> {
    gs1::normalize_gtin(gtin).map_err(gs1_err)
}

#[pyfunction]
fn is_valid_gtin(gtin: &str) -> bool {
    gs1::is_valid_gtin(gtin)
}

/// SSCC-18 from an extension digit, a company prefix (6-12 digits) and a serial reference.
#[pyfunction]
fn build_sscc(
    extension: &Bound<'_, PyAny>,
    company_prefix: &str,
    serial_ref: &Bound<'_, PyAny>,
) -> PyResult<String> {
    let ext = int_in(extension, "extension", 0, 9).map_err(|e| to_gs1(extension.py(), e))?;
    let sref = int_in(serial_ref, "serial_ref", 0, 9_999_999_999)
        .map_err(|e| to_gs1(serial_ref.py(), e))?;
    gs1::build_sscc(ext as u32, company_prefix, sref as u64).map_err(gs1_err)
}

/// ValueErrors of argument ranges become Gs1Error in the GS1 functions; TypeErrors stay.
fn to_gs1(py: Python<'_>, e: PyErr) -> PyErr {
    if e.is_instance_of::<PyValueError>(py) {
        Gs1Error::new_err(e.value(py).to_string())
    } else {
        e
    }
}

#[pyfunction]
fn is_valid_sscc(sscc: &str) -> bool {
    gs1::is_valid_sscc(sscc)
}

/// `https://{host}{prefix}/01/{gtin14}[/22/{cpv}][/10/{lot}][/21/{serial}][?17={expiry}]`.
#[pyfunction]
#[pyo3(signature = (host, gtin, serial = None, lot = None, expiry = None, prefix = "", cpv = None))]
fn digital_link(
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
fn sscc_link(host: &str, sscc: &str, prefix: &str) -> PyResult<String> {
    gs1::sscc_link(host, sscc, prefix).map_err(gs1_err)
}

/// Parses a Digital Link URI or path into {"prefix": ..., AI: value, ..., "linkType": ...}.
#[pyfunction]
fn parse_digital_link<'py>(py: Python<'py>, uri: &str) -> PyResult<Bound<'py, PyDict>> {
    let pairs = gs1::parse_digital_link(uri).map_err(gs1_err)?;
    let d = PyDict::new(py);
    for (k, v) in pairs {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// `urn:epc:id:sgtin:CompanyPrefix.IndicatorItemRef.Serial`.
#[pyfunction]
fn sgtin_urn(gtin: &str, serial: &str, company_prefix_len: usize) -> PyResult<String> {
    gs1::sgtin_urn(gtin, serial, company_prefix_len).map_err(gs1_err)
}

/// `urn:epc:id:sscc:CompanyPrefix.ExtSerialRef`.
#[pyfunction]
fn sscc_urn(sscc: &str, company_prefix_len: usize) -> PyResult<String> {
    gs1::sscc_urn(sscc, company_prefix_len).map_err(gs1_err)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_class::<PyScheme>()?;
    m.add("SerialError", py.get_type::<exceptions::SerialError>())?;
    m.add("MalformedSerial", py.get_type::<MalformedSerial>())?;
    m.add("ForgedSerial", py.get_type::<ForgedSerial>())?;
    m.add("UnknownKeyVersion", py.get_type::<UnknownKeyVersion>())?;
    m.add("Gs1Error", py.get_type::<Gs1Error>())?;
    m.add("SERIAL_LENGTH", serial::SERIAL_LEN)?;
    m.add("VERIFY_RECORD_SIZE", VERDICT_SIZE)?;
    m.add("VERIFY_OK", Status::Ok as u32)?;
    m.add("VERIFY_MALFORMED", Status::Malformed as u32)?;
    m.add("VERIFY_FORGED", Status::Forged as u32)?;
    m.add("MAX_BULK", serial::MAX_BULK)?;
    for f in [
        wrap_pyfunction!(crockford_encode, m)?,
        wrap_pyfunction!(crockford_decode, m)?,
        wrap_pyfunction!(gs1_check_digit, m)?,
        wrap_pyfunction!(normalize_gtin, m)?,
        wrap_pyfunction!(is_valid_gtin, m)?,
        wrap_pyfunction!(build_sscc, m)?,
        wrap_pyfunction!(is_valid_sscc, m)?,
        wrap_pyfunction!(digital_link, m)?,
        wrap_pyfunction!(sscc_link, m)?,
        wrap_pyfunction!(parse_digital_link, m)?,
        wrap_pyfunction!(sgtin_urn, m)?,
        wrap_pyfunction!(sscc_urn, m)?,
    ] {
        m.add_function(f)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_semver() {
        assert_eq!(super::version().split('.').count(), 3);
    }
}
