//! The guest side of `sandbox:analysis`: what an analysis module is written with.
//!
//! A module implements [`Analysis`] and names it with [`analysis!`]. Inside `run` it asks for
//! rows with [`query`], reads them as Arrow [`RecordBatch`]es, and hands its results to
//! [`emit`]. The host decides what the module may see; nothing here can widen that.
//!
//! ```ignore
//! struct Population;
//! impl sandbox_sdk::Analysis for Population {
//!     fn run(params: &sandbox_sdk::Params) -> Result<(), sandbox_sdk::Error> {
//!         let batches = sandbox_sdk::query("SELECT district, count(*) AS residents FROM persons GROUP BY district")?
//!             .collect_batches()?;
//!         sandbox_sdk::emit("population", &batches)
//!     }
//! }
//! sandbox_sdk::analysis!(Population);
//! ```

use std::fmt;

pub use arrow_array::{self, RecordBatch};
pub use arrow_schema::{self, Schema, SchemaRef};

#[doc(hidden)]
#[allow(unsafe_code, unused_qualifications, unreachable_pub, missing_debug_implementations)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../runner/wit",
        world: "analysis",
        pub_export_macro: true,
        export_macro_name: "export_analysis",
        default_bindings_module: "sandbox_sdk::bindings",
    });
}

pub use bindings::sandbox::analysis::types::ErrorCode;
use bindings::sandbox::analysis::{data, log as host_log, output};

/// Rows asked of the host per call to `next`; the host may send fewer.
const CHUNK_BYTES: u64 = 8 << 20;

/// What an analysis module implements.
pub trait Analysis {
    /// Runs the analysis with the parameters the host checked against the manifest.
    fn run(params: &Params) -> Result<(), Error>;
}

/// Exports a type implementing [`Analysis`] as the module's `run`.
#[macro_export]
macro_rules! analysis {
    ($ty:ty) => {
        struct __SandboxExport;
        impl $crate::bindings::Guest for __SandboxExport {
            fn run(
                parameters: ::std::vec::Vec<$crate::bindings::Parameter>,
            ) -> ::std::result::Result<(), $crate::bindings::Failure> {
                $crate::__run::<$ty>(parameters)
            }
        }
        $crate::bindings::export_analysis!(__SandboxExport with_types_in $crate::bindings);
    };
}

#[doc(hidden)]
pub fn __run<A: Analysis>(parameters: Vec<bindings::Parameter>) -> Result<(), bindings::Failure> {
    std::panic::set_hook(Box::new(|info| log(Level::Error, &format!("panic: {info}"))));
    A::run(&Params(parameters)).map_err(|err| {
        log(Level::Error, &err.to_string());
        match err {
            Error::Host(code) => bindings::Failure::Host(code),
            Error::Module(code) => bindings::Failure::Module(code),
            Error::Arrow(_) => bindings::Failure::Module(u32::MAX),
        }
    })
}

/// Why something in a module failed.
#[derive(Debug)]
pub enum Error {
    /// The host refused a call; the code says why.
    Host(ErrorCode),
    /// A failure of the module's own, with its code.
    Module(u32),
    /// Arrow could not encode or decode a batch.
    Arrow(arrow_schema::ArrowError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Host(code) => write!(f, "host refused the call: {}", code.name()),
            Error::Module(code) => write!(f, "module failed with code {code}"),
            Error::Arrow(err) => write!(f, "arrow: {err}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Self {
        Error::Host(code)
    }
}

impl From<arrow_schema::ArrowError> for Error {
    fn from(err: arrow_schema::ArrowError) -> Self {
        Error::Arrow(err)
    }
}

/// The run's parameters, checked by the host against the manifest (types, ranges, defaults).
#[derive(Debug)]
pub struct Params(Vec<bindings::Parameter>);

impl Params {
    fn value(&self, name: &str) -> Option<&bindings::Value> {
        self.0.iter().find(|p| p.name == name).map(|p| &p.value)
    }

    /// An integer parameter; [`ErrorCode::InvalidParameter`] when absent or of another type.
    pub fn integer(&self, name: &str) -> Result<i64, Error> {
        match self.value(name) {
            Some(bindings::Value::Integer(v)) => Ok(*v),
            _ => Err(Error::Host(ErrorCode::InvalidParameter)),
        }
    }

    /// A number parameter (integers are widened).
    pub fn number(&self, name: &str) -> Result<f64, Error> {
        match self.value(name) {
            Some(bindings::Value::Number(v)) => Ok(*v),
            Some(bindings::Value::Integer(v)) => Ok(*v as f64),
            _ => Err(Error::Host(ErrorCode::InvalidParameter)),
        }
    }

    /// A text parameter.
    pub fn text(&self, name: &str) -> Result<&str, Error> {
        match self.value(name) {
            Some(bindings::Value::Text(v)) => Ok(v),
            _ => Err(Error::Host(ErrorCode::InvalidParameter)),
        }
    }

    /// A boolean parameter.
    pub fn boolean(&self, name: &str) -> Result<bool, Error> {
        match self.value(name) {
            Some(bindings::Value::Boolean(v)) => Ok(*v),
            _ => Err(Error::Host(ErrorCode::InvalidParameter)),
        }
    }
}

/// A view the run may read: its name and its columns with their constraints.
pub use data::{Column, View};

/// The views the licence lets this run read.
pub fn views() -> Vec<View> {
    data::views()
}

/// Runs one SELECT through the host's policy gate; rows come back in bounded chunks.
pub fn query(sql: &str) -> Result<Rows, Error> {
    let result = data::query(sql)?;
    let schema = read_schema(&result.schema())?;
    Ok(Rows { result: Some(result), schema })
}

/// The rows of an accepted query, as an iterator of record batches.
#[derive(Debug)]
pub struct Rows {
    result: Option<data::QueryResult>,
    schema: SchemaRef,
}

impl Rows {
    /// The result's schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Reads every remaining batch.
    pub fn collect_batches(self) -> Result<Vec<RecordBatch>, Error> {
        self.collect()
    }
}

impl Iterator for Rows {
    type Item = Result<RecordBatch, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let result = self.result.as_ref()?;
        match result.next(CHUNK_BYTES) {
            Ok(Some(ipc)) => Some(read_batch(&ipc)),
            Ok(None) => {
                self.result = None;
                None
            }
            Err(code) => {
                self.result = None;
                Some(Err(code.into()))
            }
        }
    }
}

fn read_schema(ipc: &[u8]) -> Result<SchemaRef, Error> {
    let reader = arrow_ipc::reader::StreamReader::try_new(ipc, None)?;
    Ok(reader.schema())
}

fn read_batch(ipc: &[u8]) -> Result<RecordBatch, Error> {
    let mut reader = arrow_ipc::reader::StreamReader::try_new(ipc, None)?;
    match reader.next() {
        Some(batch) => Ok(batch?),
        None => Ok(RecordBatch::new_empty(reader.schema())),
    }
}

/// Encodes batches as one Arrow IPC stream, the form the host reads.
pub fn encode(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<u8>, Error> {
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    Ok(writer.into_inner()?)
}

/// An output table being written; only tables declared in the manifest can be begun.
#[derive(Debug)]
pub struct Table {
    writer: output::TableWriter,
    schema: SchemaRef,
}

impl Table {
    /// Begins the declared output table `name` with `schema`.
    pub fn begin(name: &str, schema: SchemaRef) -> Result<Table, Error> {
        let writer = output::begin(name, &encode(&schema, &[])?)?;
        Ok(Table { writer, schema })
    }

    /// Appends a batch of rows.
    pub fn append(&self, batch: &RecordBatch) -> Result<(), Error> {
        Ok(self.writer.append(&encode(&self.schema, std::slice::from_ref(batch))?)?)
    }

    /// The host handle, for writing raw IPC bytes.
    #[doc(hidden)]
    pub fn writer(&self) -> &output::TableWriter {
        &self.writer
    }

    /// Ends the table.
    pub fn finish(self) -> Result<(), Error> {
        Ok(self.writer.finish()?)
    }
}

/// Writes a whole output table at once; the schema is the first batch's.
pub fn emit(name: &str, batches: &[RecordBatch]) -> Result<(), Error> {
    let Some(first) = batches.first() else { return Err(Error::Host(ErrorCode::NoData)) };
    let table = Table::begin(name, first.schema())?;
    for batch in batches {
        table.append(batch)?;
    }
    table.finish()
}

/// Writes a query's rows as an output table, batch by batch; the schema is the query's, so an
/// empty result still makes an (empty) table.
pub fn emit_query(name: &str, rows: Rows) -> Result<(), Error> {
    let table = Table::begin(name, rows.schema())?;
    for batch in rows {
        table.append(&batch?)?;
    }
    table.finish()
}

/// Builds a batch from named columns (a shorthand for module code).
pub fn batch(columns: Vec<(&str, arrow_array::ArrayRef)>) -> Result<RecordBatch, Error> {
    Ok(RecordBatch::try_from_iter(columns)?)
}

/// How much a log line matters.
pub use host_log::Level;

/// Adds a line to the run's debug log (kept for development runs only).
pub fn log(level: Level, message: &str) {
    host_log::write(level, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a arrow_array::ArrayRef, Error> {
    batch.column_by_name(name).ok_or_else(|| {
        log(Level::Error, &format!("no column {name:?} in the result"));
        Error::Host(ErrorCode::SchemaMismatch)
    })
}

fn wrong_type(name: &str, array: &dyn arrow_array::Array) -> Error {
    log(Level::Error, &format!("column {name:?} has type {}", array.data_type()));
    Error::Host(ErrorCode::SchemaMismatch)
}

/// A text column's values (Utf8, LargeUtf8 or Utf8View).
pub fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>, Error> {
    use arrow_array::cast::AsArray;
    let array = column(batch, name)?;
    let values = if let Some(a) = array.as_string_opt::<i32>() {
        a.iter().map(|v| v.map(str::to_owned)).collect()
    } else if let Some(a) = array.as_string_opt::<i64>() {
        a.iter().map(|v| v.map(str::to_owned)).collect()
    } else if let Some(a) = array.as_string_view_opt() {
        a.iter().map(|v| v.map(str::to_owned)).collect()
    } else {
        return Err(wrong_type(name, array));
    };
    Ok(values)
}

/// An integer column's values (Int64, as SQL `count` returns).
pub fn integers(batch: &RecordBatch, name: &str) -> Result<Vec<Option<i64>>, Error> {
    use arrow_array::cast::AsArray;
    let array = column(batch, name)?;
    match array.as_primitive_opt::<arrow_array::types::Int64Type>() {
        Some(a) => Ok(a.iter().collect()),
        None => Err(wrong_type(name, array)),
    }
}

/// A numeric column's values as `f64` (Float64, integers, or decimals).
pub fn numbers(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>, Error> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Float64Type, Int64Type};
    use arrow_schema::DataType;
    let array = column(batch, name)?;
    Ok(match array.data_type() {
        DataType::Float64 => array.as_primitive::<Float64Type>().iter().collect(),
        DataType::Int64 => array.as_primitive::<Int64Type>().iter().map(|v| v.map(|v| v as f64)).collect(),
        DataType::Decimal128(_, scale) => {
            let divisor = 10f64.powi(i32::from(*scale));
            array.as_primitive::<Decimal128Type>().iter().map(|v| v.map(|v| v as f64 / divisor)).collect()
        }
        _ => return Err(wrong_type(name, array)),
    })
}
