//! The output audit: each rule at its boundary on a hand-made dataset, real module runs on a
//! generated city, and the cross-check against ACRO on both.

mod acro;
mod differencing;
mod examples;
mod properties;
mod rules;
