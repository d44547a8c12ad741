//! Pseudonymization of `pseudonymized` columns: a keyed HMAC-SHA256 of the value, in hex.
//!
//! The same value gets the same pseudonym in every dataset of a licence, so joins on citizen ID
//! number or credit code still work; without the key no value can be recovered or tested.
//!
//! The function lives only inside the views' plans. It is never registered in the session, so
//! analysis SQL cannot call it on values of its choosing (which would let a module hash a known
//! ID number and look it up). It must never be given a key that another licence can use: each
//! licence's key is derived from the domain secret and the licence id.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The domain secret, from which each licence's pseudonymization key is derived.
#[derive(Clone, PartialEq, Eq)]
pub struct DomainSecret([u8; 32]);

impl fmt::Debug for DomainSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DomainSecret(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("key file {path} is readable by group or others (mode {mode:o}); it must be 0600")]
    Permissions { path: String, mode: u32 },
    #[error("key file {path} must hold 64 hex digits (32 bytes), found {found} characters")]
    Format { path: String, found: usize },
}

impl DomainSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> DomainSecret {
        DomainSecret(bytes)
    }

    /// Reads a secret written as 64 hex digits. Refuses a file that others can read.
    pub fn load(path: &Path) -> Result<DomainSecret, KeyError> {
        let shown = path.display().to_string();
        let io = |source| KeyError::Io { path: shown.clone(), source };
        let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: shown, mode });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let text = text.trim();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| KeyError::Format { path: shown, found: text.chars().count() })?;
        Ok(DomainSecret(bytes))
    }

    /// The key of one licence (or of development runs, scope `dev:<licence>`).
    pub fn licence_key(&self, scope: &str) -> PseudonymKey {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"sandbox pseudonym key v1\0");
        mac.update(scope.as_bytes());
        PseudonymKey(mac.finalize().into_bytes().into())
    }
}

/// The key that pseudonymizes one licence's views.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PseudonymKey([u8; 32]);

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    /// A licence key handed over as bytes (to the runner process, which must not hold the
    /// domain secret every licence's key derives from).
    pub fn from_bytes(bytes: [u8; 32]) -> PseudonymKey {
        PseudonymKey(bytes)
    }

    /// The key's bytes, for handing it to the runner process.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The pseudonym of one value: what a view shows instead of it.
    pub fn pseudonym(&self, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("any key length");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The view-internal function. Without a key (views built only to check SQL) it plans normally
/// but refuses to run.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Pseudonymize {
    key: Option<PseudonymKey>,
    signature: Signature,
}

pub(crate) fn udf(key: Option<PseudonymKey>) -> Arc<ScalarUDF> {
    let signature = Signature::exact(vec![DataType::Utf8], Volatility::Immutable);
    Arc::new(ScalarUDF::new_from_impl(Pseudonymize { key, signature }))
}

/// The name the function shows in plans. Not callable from SQL: it is not registered.
pub(crate) const NAME: &str = "sandbox_pseudonym";

impl ScalarUDFImpl for Pseudonymize {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(key) = &self.key else {
            return exec_err!("pseudonymization key not loaded: these views can only check SQL");
        };
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0).expect("any key length");
        let input = match &args.args[0] {
            ColumnarValue::Array(a) => Arc::clone(a),
            ColumnarValue::Scalar(s) => s.to_array_of_size(1)?,
        };
        let strings = input.as_any().downcast_ref::<StringArray>().expect("signature is Utf8");
        let mut out = StringBuilder::with_capacity(strings.len(), strings.len() * 64);
        let mut hex_buf = [0u8; 64];
        for value in strings.iter() {
            match value {
                None => out.append_null(),
                Some(v) => {
                    let mut mac = keyed.clone();
                    mac.update(v.as_bytes());
                    hex::encode_to_slice(mac.finalize().into_bytes(), &mut hex_buf).expect("64 bytes");
                    out.append_value(std::str::from_utf8(&hex_buf).expect("hex is ASCII"));
                }
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(array),
        })
    }
}
