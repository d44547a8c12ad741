//! `classify`: a date's period or a number's band, the form in which a bureau publishes a
//! column (公开分类).
//!
//! `classify(date, 'year' | 'quarter' | 'month')` is the period's label (`YYYY`, `YYYYQn`,
//! `YYYY-MM`, as [`Grain::label`] writes it); `classify(number, e1, ..., en)` is the band's index:
//! 0 below `e1`, `i` from `e_i` up to `e_{i+1}`, `n` from `en` up. NULL stays NULL, and so does
//! NaN, which is in no band.
//!
//! The checker lets a `compare_only` or `aggregate_only` column be grouped and filtered through
//! this function, at the catalog's published grains and edges only; it judges the grain and edges
//! before the query runs, so they must be literals. The function must stay immutable and must
//! never return anything but a label or a band index: the output audit's trusted session may
//! register it too, to compute the same cells the output contract names.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Builder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, FieldRef, Float64Type};
use datafusion::arrow::temporal_conversions::date32_to_datetime;
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sandbox_catalog::Grain;

/// The function's SQL name.
pub(crate) const NAME: &str = "classify";

/// The `classify` function, to register in a session.
pub fn classify_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(Classify { signature: Signature::user_defined(Volatility::Immutable) })
}

/// Whether a call is a call of `classify` (by implementation, not by name).
pub(crate) fn is_classify(f: &ScalarFunction) -> bool {
    f.func.inner().is::<Classify>()
}

/// What a `classify` call cuts its first argument by.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cut {
    Grain(Grain),
    /// Strictly increasing and finite.
    Edges(Vec<f64>),
}

impl Cut {
    /// The cut the literal arguments after the first spell: one grain, or one or more edges.
    pub(crate) fn parse(values: &[&ScalarValue]) -> std::result::Result<Cut, String> {
        if let [value] = values
            && let Some(text) = string(value)
        {
            let text = text.ok_or("the grain is NULL")?;
            return Grain::ALL
                .into_iter()
                .find(|g| g.as_str() == text)
                .map(Cut::Grain)
                .ok_or_else(|| format!("unknown grain {text:?}: it is 'year', 'quarter' or 'month'"));
        }
        let mut edges: Vec<f64> = Vec::with_capacity(values.len());
        for value in values {
            let edge = match value.cast_to(&DataType::Float64) {
                Ok(ScalarValue::Float64(Some(edge))) if value.data_type().is_numeric() => edge,
                _ => return Err(format!("edges are numbers, not {value}")),
            };
            if !edge.is_finite() {
                return Err(format!("edge {edge} is not a finite number"));
            }
            if edges.last().is_some_and(|&previous| edge <= previous) {
                return Err(format!("edges must increase strictly, and {edge} follows {}", edges[edges.len() - 1]));
            }
            edges.push(edge);
        }
        if edges.is_empty() {
            return Err("classify takes a grain or at least one edge after the value".to_owned());
        }
        Ok(Cut::Edges(edges))
    }
}

/// A string literal's text (`Some(None)` for a NULL string), or `None` if it is no string.
fn string(value: &ScalarValue) -> Option<Option<&str>> {
    match value {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => Some(s.as_deref()),
        _ => None,
    }
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Dates and timestamps without a time zone: a label of a zoned timestamp would depend on a zone
/// the catalog does not declare.
fn is_date(t: &DataType) -> bool {
    matches!(t, DataType::Date32 | DataType::Timestamp(_, None))
}

fn is_number(t: &DataType) -> bool {
    t.is_numeric()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Classify {
    signature: Signature,
}

impl ScalarUDFImpl for Classify {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Takes the types as they are, so that the planner never wraps the column in a cast: the
    /// checker judges the column itself.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [value, grain] if is_date(value) && is_string(grain) => Ok(arg_types.to_vec()),
            [value, edges @ ..] if is_number(value) && !edges.is_empty() && edges.iter().all(is_number) => {
                Ok(arg_types.to_vec())
            }
            [DataType::Null, grain] if is_string(grain) => Ok(vec![DataType::Date32, grain.clone()]),
            [DataType::Null, edges @ ..] if !edges.is_empty() && edges.iter().all(is_number) => {
                Ok([DataType::Float64].into_iter().chain(edges.iter().cloned()).collect())
            }
            _ => {
                let types: Vec<String> = arg_types.iter().map(ToString::to_string).collect();
                plan_err!(
                    "classify takes a date or timestamp and a grain ('year', 'quarter', 'month'), or a number and \
                     one or more numeric edges; not ({})",
                    types.join(", ")
                )
            }
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match arg_types.get(1) {
            Some(t) if is_string(t) => DataType::Utf8,
            _ => DataType::Int64,
        })
    }

    /// Refuses a malformed grain or edges as soon as the call is planned, when they are literals.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let literals: Option<Vec<&ScalarValue>> = args.scalar_arguments.iter().skip(1).copied().collect();
        if let Some(literals) = literals
            && let Err(e) = Cut::parse(&literals)
        {
            return plan_err!("classify: {e}");
        }
        let types: Vec<DataType> = args.arg_fields.iter().map(|f| f.data_type().clone()).collect();
        Ok(Arc::new(Field::new(NAME, self.return_type(&types)?, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some((value, cut)) = args.args.split_first() else { return exec_err!("classify takes arguments") };
        let mut literals = Vec::with_capacity(cut.len());
        for c in cut {
            match c {
                ColumnarValue::Scalar(s) => literals.push(s),
                ColumnarValue::Array(_) => return exec_err!("classify: the grain and edges must be constants"),
            }
        }
        let cut = match Cut::parse(&literals) {
            Ok(cut) => cut,
            Err(e) => return exec_err!("classify: {e}"),
        };
        let (array, scalar) = match value {
            ColumnarValue::Array(a) => (Arc::clone(a), false),
            ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
        };
        let out = match &cut {
            Cut::Grain(grain) => labels(&array, *grain)?,
            Cut::Edges(edges) => bands(&array, edges)?,
        };
        Ok(match scalar {
            true => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
            false => ColumnarValue::Array(out),
        })
    }
}

/// Each date's period label.
fn labels(array: &ArrayRef, grain: Grain) -> Result<ArrayRef> {
    if !is_date(array.data_type()) && *array.data_type() != DataType::Null {
        return exec_err!("classify by {grain} takes a date or timestamp, not {}", array.data_type());
    }
    let dates = cast(array, &DataType::Date32)?;
    let dates = dates.as_primitive::<Date32Type>();
    let mut out = StringBuilder::with_capacity(dates.len(), dates.len() * 7);
    for day in dates.iter() {
        match day.and_then(date32_to_datetime) {
            Some(t) => out.append_value(grain.label(t.date())),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// Each number's band index: how many edges are at or below it.
fn bands(array: &ArrayRef, edges: &[f64]) -> Result<ArrayRef> {
    if !is_number(array.data_type()) && *array.data_type() != DataType::Null {
        return exec_err!("classify at edges takes a number, not {}", array.data_type());
    }
    let numbers = cast(array, &DataType::Float64)?;
    let numbers = numbers.as_primitive::<Float64Type>();
    let mut out = Int64Builder::with_capacity(numbers.len());
    for number in numbers.iter() {
        out.append_option(number.filter(|v| !v.is_nan()).map(|v| edges.partition_point(|&e| e <= v) as i64));
    }
    Ok(Arc::new(out.finish()))
}
