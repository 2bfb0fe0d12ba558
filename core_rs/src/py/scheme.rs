//! `app._core.Scheme`: the serial scheme's binding. Arguments are checked here, before the GIL
//! is released around the bulk loops of `serial::Scheme` and `print`.
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::args::{batch_range, int_in, opt_version, serial_text, thread_count, U32_MAX};
use super::errors::{key_err, scheme_err, serial_err};
use crate::serial::{self, RecordFormat, SerialError, UNDECODABLE, VERDICT_SIZE};
use crate::{pin, print};

// The defaults below are literals so Python's signatures show them (stubtest checks them
// against app/_core.pyi); these keep them equal to the constants they stand for.
const _: () = assert!(pin::DEFAULT_LEN == 6);
const _: () = assert!(serial::SERIAL_LEN == 20);

/// The serial scheme under a set of active key versions (keys derived from one master secret).
#[pyclass(frozen, module = "app._core", name = "Scheme")]
pub(crate) struct PyScheme {
    inner: serial::Scheme,
}

#[pymethods]
impl PyScheme {
    #[new]
    #[pyo3(signature = (master_key, versions, current_version, pin_length = 6))]
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
        let inner =
            serial::Scheme::new(master_key, &versions, current, pin_length).map_err(scheme_err)?;
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
        let v = opt_version(version)?;
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
        let version = opt_version(version)?;
        let threads = thread_count(threads)?;
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
        let version = opt_version(version)?;
        let threads = thread_count(threads)?;
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
    #[pyo3(signature = (records, record_size = 20, threads = None))]
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
        let threads = thread_count(threads)?;
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
        let threads = thread_count(threads)?;
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
